"""`python -m bot` as a subprocess, for the tests of what only a whole process shows: a SIGKILL and
a restart on the same port and database, its memory and descriptors, its limits, its log.

One helper for all of them (the crash-recovery burst, the pipeline kills, the live-server limits),
so a multi-instance test starts several the same way. The process is configured by its
environment alone: `clean_environment` drops every biagent setting of the caller (and the SDK's
own ANTHROPIC_ ones) so a developer's shell never leaks into a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.config import variables

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 30.0  # a bound for a loaded machine, not an expected time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(settings: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any biagent setting, then `settings`."""
    read = {env.name for env in variables().values()}
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in read and not key.startswith("ANTHROPIC_")
    }
    return kept | settings


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL when the process has not ended 10 s later."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class BotProcess:
    """One `python -m bot`, its stdout and stderr appended to `log_path` across restarts.

    `open_files`, when given, is its (soft, hard) RLIMIT_NOFILE.
    """

    environment: dict[str, str]
    log_path: Path
    open_files_limit: tuple[int, int] | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """Chosen once, before the first start: a restart listens on the same port."""
        return int(self.environment.setdefault("PORT", str(free_port())))

    @property
    def instance(self) -> str:
        """Its BIAGENT_INSTANCE_ID, the same across restarts (a deployment's stable name, as
        a systemd unit's or a pod's): a restart resumes its own claimed work at once, without
        waiting for the leases to run out (unless the environment names another)."""
        return self.environment.setdefault("BIAGENT_INSTANCE_ID", f"bot-{self.port}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (again: on the same port and database)."""
        limit = self.open_files_limit

        def limit_open_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, limit)

        assert self.port and self.instance
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_open_files,
            )

    def running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "the process was never started"
        return self.process

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would end it."""
        process = self.running()
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        if self.alive():
            terminate(self.running())

    def log(self, tail: int | None = 3000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text if tail is None else text[-tail:]

    def rss_bytes(self) -> int:
        """The process's resident memory now (VmRSS)."""
        status = Path(f"/proc/{self.running().pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.running().pid}/fd"))

    async def listening(self) -> None:
        """Until the port accepts a connection; fails at once when the process has ended."""
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.alive(), self.log()
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the server did not start listening\n{self.log()}")
