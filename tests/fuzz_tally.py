"""The fuzz tests' figures, summed over the run and printed as one line at its end (a pytest
plugin loaded by tests/conftest.py), and the log watch that finds the tracebacks they must not
cause.

The line reads, for example: `fuzz: 9,120 requests, 2,410 frames, 41.3 s; 5xx 0, dropped 0,
bad closes 0, tracebacks 0; answers 2xx 890, 4xx 8,230; closes 1007 310, 1008 12, 1009 4;
deliveries done 230, rejected 12` (the statuses of the webhooks accepted, once worked).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

# Loggers whose tracebacks mean the web edge let something through: aiohttp's "Error handling
# request", web/errors.py's "unhandled error", web/ws.py's "WebSocket handler failed".
EDGE_LOGGERS = ("aiohttp", "web")


@dataclass
class Tally:
    requests: int = 0
    frames: int = 0
    seconds: float = 0.0
    server_errors: int = 0
    dropped: int = 0
    bad_closes: int = 0
    tracebacks: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # by class: "2xx", "4xx"...
    closes: Counter[int] = field(default_factory=Counter)  # WebSocket close codes received
    dispatched: Counter[str] = field(default_factory=Counter)  # delivery statuses once worked

    def line(self) -> str:
        return (
            f"fuzz: {self.requests:,} requests, {self.frames:,} frames, {self.seconds:.1f} s; "
            f"5xx {self.server_errors}, dropped {self.dropped}, bad closes {self.bad_closes}, "
            f"tracebacks {self.tracebacks}; answers {counts(self.answers)}; "
            f"closes {counts(self.closes)}; deliveries {counts(self.dispatched)}"
        )


def counts(counter: Counter[Any]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in sorted(counter.items())) or "none"


TALLY = Tally()


class TracebackWatch(logging.Handler):
    """Keeps the ERROR records with a traceback that the web edge logs, until taken."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith(EDGE_LOGGERS):
            self.caught.append(record)

    def take(self) -> list[str]:
        """The tracebacks caught since the last call, formatted, and counted in the tally."""
        caught, self.caught = self.caught, []
        TALLY.tracebacks += len(caught)
        formatter = logging.Formatter("%(name)s: %(message)s")
        return [formatter.format(record) for record in caught]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.requests or TALLY.frames:
        terminalreporter.write_line(TALLY.line())
