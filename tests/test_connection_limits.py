"""Slow and idle connections are bounded (web/serving.py), shown on the real server
(`python -m bot` in a subprocess): the soft open-file limit is raised to the hard one, idle
connections close, and beyond the connection limit a new connection gets a quick 503 instead of
the process running out of descriptors."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.bot_process import BotProcess
from tests.live_server import live_server
from tests.worktree_helpers import wait_until

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def connect(server: BotProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def closed_by_server(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """Whether the server closes the connection within `within` seconds (what it sent first is
    read and dropped)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def healthz_status(server: BotProcess) -> int:
    reader, writer = await connect(server)
    try:
        writer.write(HEALTHZ)
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


def limits_of(server: BotProcess) -> str:
    limits = Path(f"/proc/{server.process.pid}/limits").read_text().splitlines()
    return " ".join(next(line for line in limits if line.startswith("Max open files")).split())


async def test_the_soft_open_file_limit_is_raised_to_the_hard_one_and_logged(
    tmp_path: Path,
) -> None:
    async with live_server(tmp_path, open_files=(256, 512)) as server:
        assert limits_of(server) == "Max open files 512 512 files"
        log = server.log(tail=None)
    assert "open-file limit raised from 256 to 512" in log
    assert "at most 332 open connections" in log  # 90% of 512, less the backlog


async def test_idle_connections_are_closed_after_the_keepalive_timeout(tmp_path: Path) -> None:
    async with live_server(tmp_path, HTTP_KEEPALIVE_TIMEOUT="0.5") as server:
        silent_reader, silent = await connect(server)  # never sends a request
        reader, writer = await connect(server)
        writer.write(HEALTHZ)  # one request, then idle on a keep-alive connection
        assert b" 200 " in await asyncio.wait_for(reader.readline(), 5)
        assert await closed_by_server(silent_reader)
        assert await closed_by_server(reader)
        silent.close()
        writer.close()


async def test_connections_beyond_the_limit_get_a_quick_503_not_a_descriptor_error(
    tmp_path: Path,
) -> None:
    async with live_server(tmp_path, open_files=(256, 256)) as server:
        held = [await connect(server) for _ in range(300)]  # idle: they send nothing
        shed = [reader for reader, _ in held[102:]]
        for reader in shed:  # over 90% of 256 less the backlog: answered 503 and closed at once
            assert b" 503 " in await asyncio.wait_for(reader.readline(), 5)
            assert await closed_by_server(reader)
        assert await healthz_status(server) == 503
        assert server.open_files() < 256
        for _, writer in held:
            writer.close()
        await wait_until(lambda: server.open_files() < 100, what="the idle connections closed")
        assert await healthz_status(server) == 200
        log = server.log(tail=None)
    assert "102 connections open, the limit: new ones get 503" in log
    assert "Traceback" not in log and "Too many open files" not in log


async def test_a_body_trickled_slower_than_the_deadline_is_cut_off(tmp_path: Path) -> None:
    async with live_server(tmp_path, WEBHOOK_BODY_TIMEOUT="0.5") as server:
        reader, writer = await connect(server)
        writer.write(
            b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"X-Hub-Signature-256: sha256=00\r\n\r\n{"
        )
        assert b" 408 " in await asyncio.wait_for(reader.readline(), 5)
        assert await closed_by_server(reader)
        with contextlib.suppress(ConnectionError):
            writer.write(b"1")  # one more byte, as a trickling client would
        writer.close()
