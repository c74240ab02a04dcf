"""What the benchmarks share: free ports, server subprocesses, percentiles, the report.

Every bench (docs/design.md, Benchmarks) starts what it needs on loopback, measures the project
beside a bare baseline in the same run, prints a readable report and, as its very last line,
one JSON object with its figures. This module is a library: it is not a bench itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BENCH_API_TOKEN = "bench-api-token-0123456789abcdef"
BENCH_WEBHOOK_SECRET = "bench-webhook-secret-0123456789"

# Variables that would switch features on in a server started from the bench: the bench
# runs against a clean, known configuration whatever the caller's environment holds.
_FEATURE_PREFIXES = ("GITHUB_", "JIRA_", "ANTHROPIC_", "BIAGENT_", "DATABASE_", "REVIEW_")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raise_open_files_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (up to the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def sign(body: bytes, secret: str = BENCH_WEBHOOK_SECRET) -> str:
    """The X-Hub-Signature-256 value GitHub would send for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def fixture_bytes(relative: str) -> bytes:
    """A payload from tests/fixtures (real deliveries, see their SOURCES.md), as bytes."""
    return (FIXTURES / relative).read_bytes()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (sorted or not); NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of_seconds(cls, latencies_s: Sequence[float]) -> LatencySummary:
        ordered = sorted(latencies_s)

        def at(fraction: float) -> float:
            return round(percentile(ordered, fraction) * 1000, 2)

        return cls(len(ordered), at(0.50), at(0.90), at(0.99), at(1.0))


@dataclass(frozen=True, slots=True)
class Round:
    """One round of a bench that measures its targets in turn; round -1 is the warm-up."""

    number: int
    count: int  # items (events, deliveries) each target gets in this round

    @property
    def warmup(self) -> bool:
        return self.number < 0


def alternating_rounds(rounds: int, *, warmup: int, per_round: int) -> Iterator[Round]:
    """The warm-up round, then `rounds` measured ones. The caller runs every target in each
    round before the next, so drift of the machine hits them all alike."""
    yield Round(-1, warmup)
    for number in range(rounds):
        yield Round(number, per_round)


def ratio_of(ours: float, bare: float) -> float:
    """Ours over the baseline of the same run; 0 when the baseline measured nothing."""
    return ours / bare if bare else 0.0


def bench_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without feature settings, plus `extra`."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_FEATURE_PREFIXES) and name not in ("HOST", "PORT", "LOG_LEVEL")
    }
    kept["PYTHONUNBUFFERED"] = "1"
    kept.update(extra)
    return kept


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (NaN where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A server in a subprocess, its output in a log file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time the server (all its threads) has used so far (Linux)."""
        assert self.process is not None, "start() first"
        return process_cpu_seconds(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_healthy(self, url: str, *, timeout_s: float = 30.0) -> None:
        """Poll `url` until it answers 200; raise with the log's tail if the process dies."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not healthy after {timeout_s}s")
                await asyncio.sleep(0.05)

    def stop(self, *, timeout_s: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextlib.contextmanager
def running(*servers: ServerProcess) -> Iterator[None]:
    """Start the servers, and stop every one of them however the block ends."""
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def scratch_directory(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A temporary directory for databases and logs, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"  logs and database kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


async def serve_app(
    workdir: Path, port: int, *, backlog: int = 128
) -> tuple[web.AppRunner, web.Application]:
    """The real app (`web.app.create_app`) with a fresh SQLite file in `workdir`, served in
    this process on a loopback port, so a bench can drive its services directly."""
    from bot.config import Secret, Settings
    from web.app import create_app

    settings = Settings(
        host="127.0.0.1",
        port=port,
        database_url=f"sqlite:///{workdir / 'biagent.db'}",
        api_token=Secret(BENCH_API_TOKEN),
        worktree_root=workdir / "worktrees",
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=backlog).start()
    return runner, app


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def print_table(rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned first column, right-aligned figures."""
    widths = [max(len(str(row[col])) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        cells = [
            str(cell).ljust(width) if col == 0 else str(cell).rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells))


def emit_result(figures: Mapping[str, Any]) -> None:
    """The very last line of a bench: one JSON object with its figures."""
    print(json.dumps(dict(figures), separators=(", ", ": ")), flush=True)
