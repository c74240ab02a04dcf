"""The operators' metrics in the Prometheus text format (GET /metrics, docs/operations.md).

Each app has its own `CollectorRegistry` (never prometheus-client's global one, so two apps in
one process, as in the tests, do not share or collide). The figures about work (deliveries,
the dispatcher's lag, review batches, agent runs and dollars, JIRA syncs, pipelines) are read
from the database at scrape time by `read_figures`, so they cannot drift from what the API
shows; the WebSocket clients are counted on the bus at the same moment. The one thing that has
to be measured beforehand is the event loop's lag: `LoopLagProbe` runs on the app's scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from bot.readiness import Integration, IntegrationState, integrations
from bot.reviews.states import BatchStatus
from bot.services import Services
from storage import deliveries, operations
from storage.jira_sync import RunStatus
from storage.operations import AgentRunCount, JiraSyncState, StatusCount
from storage.timestamps import from_text, to_text

PENDING_BATCHES = tuple(status for status in BatchStatus if status.in_progress)
LOOP_LAG_EVERY_S = 2.0
LOOP_LAG_WINDOW = 30  # probes: the max covers about the last minute


@dataclass(frozen=True, slots=True)
class Figures:
    """What the database and the bus say at one scrape."""

    deliveries: dict[str, int]
    dispatcher_lag_s: float
    review_batches: list[StatusCount]
    oldest_batch_age_s: float
    agent_runs: list[AgentRunCount]
    agent_dollars: dict[str, float]
    jira_syncs: list[JiraSyncState]
    pipelines: list[StatusCount]
    websocket_clients: int
    integrations: list[Integration]


def _age_s(now: datetime, stamp: str | None) -> float:
    return 0.0 if stamp is None else max(0.0, (now - from_text(stamp)).total_seconds())


async def read_figures(services: Services) -> Figures:
    db, now = services.db, services.clock.now()
    batches = await operations.review_batches_by_status(db, PENDING_BATCHES)
    oldest_batch = min((b.oldest_at for b in batches if b.oldest_at), default=None)
    jira_syncs = await operations.jira_sync_states(db)
    return Figures(
        deliveries=await deliveries.count_by_status(db),
        dispatcher_lag_s=_age_s(
            now, await operations.oldest_due_delivery(db, now_text=to_text(now))
        ),
        review_batches=batches,
        oldest_batch_age_s=_age_s(now, oldest_batch),
        agent_runs=await operations.agent_runs_by_status(db),
        agent_dollars=await operations.agent_dollars(db),
        jira_syncs=jira_syncs,
        pipelines=await operations.pipelines_by_status(db),
        websocket_clients=services.bus.subscriber_count,
        integrations=integrations(services, jira_syncs),
    )


class LoopLagProbe:
    """How late the event loop runs a timer that is due: a short real sleep, timed.

    It measures the loop itself, so it reads the real monotonic timer rather than the app's
    injected clock (a test's ManualClock does not run while the loop is blocked)."""

    def __init__(
        self, *, sleep_s: float = 0.01, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.sleep_s = sleep_s
        self.timer = timer
        self.recent: deque[float] = deque(maxlen=LOOP_LAG_WINDOW)

    async def measure(self) -> float:
        started = self.timer()
        await asyncio.sleep(self.sleep_s)
        lag = max(0.0, self.timer() - started - self.sleep_s)
        self.recent.append(lag)
        return lag

    @property
    def last_s(self) -> float:
        return self.recent[-1] if self.recent else 0.0

    @property
    def max_s(self) -> float:
        return max(self.recent, default=0.0)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _by_status(
    name: str, doc: str, counts: dict[str, int], known: tuple[str, ...]
) -> GaugeMetricFamily:
    """A gauge per status, the known ones present at 0 so a series never vanishes."""
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in dict.fromkeys([*known, *counts]):
        family.add_metric([status], counts.get(status, 0))
    return family


def _work_families(figures: Figures) -> Iterator[Metric]:
    yield _by_status(
        "biagent_deliveries",
        "Deliveries in the log, by status.",
        figures.deliveries,
        deliveries.STATUSES,
    )
    yield _gauge(
        "biagent_dispatcher_lag_seconds",
        "How long the longest-waiting due delivery has waited for the dispatcher (0: none).",
        figures.dispatcher_lag_s,
    )
    yield _by_status(
        "biagent_review_batches_pending",
        "Review batches gathering comments or being worked, by status.",
        {batch.status: batch.count for batch in figures.review_batches},
        PENDING_BATCHES,
    )
    yield _gauge(
        "biagent_review_batch_oldest_pending_age_seconds",
        "Age of the oldest pending review batch, from its first comment (0: none).",
        figures.oldest_batch_age_s,
    )
    yield _by_status(
        "biagent_pipelines",
        "Ticket pipelines, by status.",
        {pipeline.status: pipeline.count for pipeline in figures.pipelines},
        (),
    )


def _agent_families(figures: Figures) -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "biagent_agent_runs", "Agent runs, by agent and status.", labels=["agent", "status"]
    )
    for run in figures.agent_runs:
        runs.add_metric([run.agent, run.status], run.count)
    yield runs
    dollars = CounterMetricFamily(
        "biagent_agent_cost_dollars", "Dollars spent on the model, by agent.", labels=["agent"]
    )
    for agent, spent in sorted(figures.agent_dollars.items()):
        dollars.add_metric([agent], spent)
    yield dollars


def _jira_families(figures: Figures, now: datetime) -> Iterator[Metric]:
    age = GaugeMetricFamily(
        "biagent_jira_sync_age_seconds",
        "Seconds since the project's last complete JIRA sync finished.",
        labels=["project"],
    )
    errors = CounterMetricFamily(
        "biagent_jira_sync_errors", "Failed JIRA sync runs, by project.", labels=["project"]
    )
    failing = GaugeMetricFamily(
        "biagent_jira_sync_last_failed",
        "1 when the project's newest finished JIRA sync failed.",
        labels=["project"],
    )
    for sync in figures.jira_syncs:
        if sync.last_complete_at is not None:
            age.add_metric([sync.project], _age_s(now, sync.last_complete_at))
        errors.add_metric([sync.project], sync.failures)
        failing.add_metric([sync.project], 1 if sync.last_status == RunStatus.FAILED else 0)
    yield from (age, errors, failing)


def _live_families(figures: Figures, probe: LoopLagProbe) -> Iterator[Metric]:
    yield _gauge(
        "biagent_websocket_clients",
        "WebSocket clients subscribed to the event stream.",
        figures.websocket_clients,
    )
    yield _gauge(
        "biagent_event_loop_lag_seconds",
        "How late the event loop ran a due timer, at the last probe.",
        probe.last_s,
    )
    yield _gauge(
        "biagent_event_loop_lag_max_seconds",
        f"The largest event-loop lag of the last {LOOP_LAG_WINDOW} probes.",
        probe.max_s,
    )
    states = GaugeMetricFamily(
        "biagent_integration_state",
        "1 for each integration's current state (ok, degraded, off).",
        labels=["integration", "state"],
    )
    for integration in figures.integrations:
        for state in IntegrationState:
            states.add_metric([integration.name, state], 1 if integration.state == state else 0)
    yield states


class _FiguresCollector:
    """Hands the registry the families of the figures read just before the scrape renders."""

    def __init__(self, probe: LoopLagProbe) -> None:
        self.probe = probe
        self.figures: Figures | None = None
        self.now: datetime | None = None

    def collect(self) -> Iterator[Metric]:
        if self.figures is None or self.now is None:
            return
        yield from _work_families(self.figures)
        yield from _agent_families(self.figures)
        yield from _jira_families(self.figures, self.now)
        yield from _live_families(self.figures, self.probe)


class OperatorMetrics:
    """One app's registry: the process's own collectors and the figures of the service."""

    def __init__(self, services: Services, probe: LoopLagProbe) -> None:
        self.services = services
        self.probe = probe
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._figures = _FiguresCollector(probe)
        self.registry.register(self._figures)

    async def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition body and its content type, in the format `accept` asks for."""
        figures = await read_figures(self.services)
        encode, content_type = choose_encoder(accept)
        # No await from here to the encoding: a concurrent scrape cannot swap the figures.
        self._figures.figures, self._figures.now = figures, self.services.clock.now()
        return encode(self.registry), content_type
