"""What one biagent process does: `BIAGENT_ROLE` (docs/deploy.md, the role split).

`all` (the default) is the one-process form: it takes requests and works them. On PostgreSQL
the work can be split: `web` instances take webhooks (stored, then 202), the API, the pages and
the WebSockets, and run no background work; `worker` instances run the dispatcher, review
batches, pipelines, agents and periodic jobs, and serve only the probes (`/healthz`, `/readyz`,
`/metrics`). A web instance's writes reach the workers through the database alone: the workers
look for claimable rows every `WORKER_POLL_INTERVAL`. The composition root (web/composition.py)
and the app factory (web/app.py) ask the role what to open and which routes to serve.
"""

from __future__ import annotations

import enum
import os
import socket
import uuid

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""What a worker serves: enough for a load balancer, an orchestrator and a scraper."""


class Role(enum.StrEnum):
    ALL = "all"
    WEB = "web"
    WORKER = "worker"

    @property
    def serves_requests(self) -> bool:
        """Webhooks, the API, the pages and the WebSockets."""
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        """Dispatch, review batches, pipelines, agents and the periodic jobs."""
        return self is not Role.WEB

    @property
    def polls_for_work(self) -> bool:
        """Work is written by other processes (web instances): look for it on a short interval
        rather than wait for an in-process wake-up that never comes."""
        return self is Role.WORKER


def sqlite_problem(role: Role) -> str | None:
    """Why `role` cannot run on SQLite (one process owns that database), or None."""
    if role is Role.ALL:
        return None
    return (
        f"{role} needs PostgreSQL (DATABASE_URL=postgresql://...): on SQLite one process does"
        " everything, so use BIAGENT_ROLE=all (the default)"
    )


def default_instance_id() -> str:
    """`<hostname>-<pid>-<short random>`: unique per process start, readable in the logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
