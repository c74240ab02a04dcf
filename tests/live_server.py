"""The real server as a subprocess (`python -m bot`, tests/bot_process.py) with the settings the
limit tests need: its memory, its descriptors, its limits, its log (stdout and stderr in a file)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.bot_process import BotProcess, clean_environment, free_port
from tests.helpers import API_TOKEN, JIRA_WEBHOOK_SECRET, WEBHOOK_SECRET


@contextlib.asynccontextmanager
async def live_server(
    tmp_path: Path, *, open_files: tuple[int, int] | None = None, **settings: str
) -> AsyncIterator[BotProcess]:
    """The server with `settings` as environment variables (and, when given, `open_files` as
    its (soft, hard) RLIMIT_NOFILE), listening; stopped with SIGTERM afterwards."""
    port = free_port()
    environment = clean_environment(
        {
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}",
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "JIRA_WEBHOOK_SECRET": JIRA_WEBHOOK_SECRET,
            "BIAGENT_API_TOKEN": API_TOKEN,
            "WORKTREE_ROOT": str(tmp_path / "worktrees"),
            "LOG_LEVEL": "INFO",
        }
        | settings
    )
    server = BotProcess(environment, tmp_path / f"server-{port}.log", open_files)
    server.start()
    try:
        await server.listening()
        yield server
    finally:
        server.stop()
