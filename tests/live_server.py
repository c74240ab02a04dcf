"""The real server as a subprocess (`python -m bot`) for tests of what only a whole process shows:
its memory, its descriptors, its limits, its log (stderr, kept in a file)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bot.config import variables
from tests.helpers import API_TOKEN, JIRA_WEBHOOK_SECRET, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        """The process's resident memory now (VmRSS)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _environment(tmp_path: Path, port: int, settings: dict[str, str]) -> dict[str, str]:
    read = {env.name for env in variables().values()}  # none of the caller's settings
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in read and not key.startswith("ANTHROPIC_")
    }
    environment.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}",
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        JIRA_WEBHOOK_SECRET=JIRA_WEBHOOK_SECRET,
        BIAGENT_API_TOKEN=API_TOKEN,
        WORKTREE_ROOT=str(tmp_path / "worktrees"),
        LOG_LEVEL="INFO",
    )
    environment.update(settings)
    return environment


async def _wait_listening(server: LiveServer) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log_text()
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the server did not start listening")


def start(
    tmp_path: Path, open_files: tuple[int, int] | None, settings: dict[str, str]
) -> LiveServer:
    """`python -m bot` on a free port, its stderr in a file of tmp_path."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"

    def limit_open_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=ROOT,
            env=_environment(tmp_path, port, settings),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=limit_open_files,
        )
    return LiveServer(process, port, log)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL when the process has not ended 10 s later."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop(server: LiveServer) -> None:
    terminate(server.process)


@contextlib.asynccontextmanager
async def live_server(
    tmp_path: Path, *, open_files: tuple[int, int] | None = None, **settings: str
) -> AsyncIterator[LiveServer]:
    """The server with `settings` as environment variables (and, when given, `open_files` as
    its (soft, hard) RLIMIT_NOFILE), listening; stopped with SIGTERM afterwards."""
    server = start(tmp_path, open_files, settings)
    try:
        await _wait_listening(server)
        yield server
    finally:
        stop(server)
