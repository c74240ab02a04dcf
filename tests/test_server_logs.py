"""Logs stay useful under attack (web/server_logs.py): a client's fault is one line, never an
ERROR with a traceback, and a repeated error is written once per window with a count."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp.http_exceptions import LineTooLong

from tests.bot_process import BotProcess
from tests.live_server import live_server
from tests.worktree_helpers import wait_until
from web.server_logs import ClientErrorFilter, RepeatFilter

WEBHOOK_HEAD = (
    b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\n"
    b"Content-Type: application/json\r\n"
)


def record(message: str, level: int = logging.ERROR, error: BaseException | None = None) -> Any:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("aiohttp.server", level, __file__, 1, message, (), exc_info)


async def send(server: BotProcess, data: bytes, *, then_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    await writer.drain()
    answer = b"" if then_close else await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return answer


async def test_a_dropped_body_a_garbage_gzip_and_a_long_header_are_one_line_each(
    tmp_path: Path,
) -> None:
    async with live_server(tmp_path) as server:
        await send(server, WEBHOOK_HEAD + b'Content-Length: 1000\r\n\r\n{"zen": ', then_close=True)
        garbage = b"Content-Encoding: gzip\r\nContent-Length: 16\r\n\r\nthis is not gzip"
        assert b" 400 " in await send(server, WEBHOOK_HEAD + garbage)
        long_line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n"
        assert b" 400 " in await send(server, long_line)
        await wait_until(
            lambda: "LineTooLong" in server.log(tail=None), what="the long line logged"
        )
        await wait_until(lambda: "went away" in server.log(tail=None), what="the drop logged")
        log = server.log(tail=None)
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if " ERROR " in line] == []
    assert len([line for line in log.splitlines() if "LineTooLong" in line]) == 1
    assert " WARNING aiohttp.server: Error handling request from 127.0.0.1: LineTooLong" in log


def test_a_client_error_becomes_one_warning_line_without_its_traceback() -> None:
    entry = record("Error handling request from %s", error=LineTooLong("a" * 20, "8190"))
    entry.args = ("127.0.0.1",)
    assert ClientErrorFilter().filter(entry)
    assert (entry.levelno, entry.exc_info) == (logging.WARNING, None)
    assert entry.getMessage().startswith("Error handling request from 127.0.0.1: LineTooLong: 400")
    assert "\n" not in entry.getMessage()


def test_a_server_error_keeps_its_level_and_traceback() -> None:
    entry = record("Unhandled exception", error=RuntimeError("ours"))
    assert ClientErrorFilter().filter(entry)
    assert entry.levelno == logging.ERROR and entry.exc_info is not None


def test_a_repeated_error_passes_once_per_window_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    repeats = RepeatFilter(60, now=lambda: now[0])
    passed = []
    for second in range(0, 130, 2):  # one every 2 s for 130 s
        now[0] = float(second)
        entry = record("socket.accept() out of system resource", error=OSError(24, "Too many"))
        if repeats.filter(entry):
            passed.append((second, entry.getMessage()))
    assert [second for second, _ in passed] == [0, 60, 120]
    assert passed[1][1].endswith("[29 more like this held back]")


def test_different_errors_and_info_lines_are_never_held_back() -> None:
    repeats = RepeatFilter(60, now=lambda: 0.0)
    assert repeats.filter(record("one thing failed"))
    assert repeats.filter(record("another thing failed"))
    assert repeats.filter(record("one thing failed", level=logging.WARNING))
    assert all(repeats.filter(record("GET / 200", level=logging.INFO)) for _ in range(5))
    assert not repeats.filter(record("one thing failed"))
