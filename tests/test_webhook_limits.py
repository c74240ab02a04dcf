"""What an anonymous webhook may cost before its signature is checked (web/webhook_body.py):
refused unread on its headers, `100 Continue` only after those checks, a body capped when
inflated, read under a deadline and within one shared byte budget; clients' faults logged as
one line, never an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path

import pytest

from bot.config import Secret
from tests.conftest import AppClient, StartApp
from tests.helpers import JIRA_WEBHOOK_SECRET, github_headers, jira_headers, make_settings
from tests.worktree_helpers import wait_until
from web.keys import READ_BUDGET

MIB = 1024 * 1024
WRONG = "sha256=" + "0" * 64


class RawConnection:
    """A client that sends bytes as they are, and reads the server's answers as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def to(cls, client: AppClient) -> RawConnection:
        assert client.server.port is not None
        return cls(*await asyncio.open_connection("127.0.0.1", client.server.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines if line)
        found = {name.lower(): value for name, value in fields.items()}
        body = await self.reader.readexactly(int(found.get("content-length", "0")))
        return int(status_line.split()[1]), found, body

    async def closed_by_server(self) -> bool:
        """Whether the server closes the connection (within 5 s) without saying more."""
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


def head(path: str, length: int, signature: str | None = WRONG, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += ["X-GitHub-Event: ping", "X-GitHub-Delivery: d-1", f"Content-Length: {length}"]
    if signature is not None:
        lines.append(f"X-Hub-Signature-256: {signature}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


async def test_a_missing_signature_is_401_before_the_body_is_sent(client: AppClient) -> None:
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", 20 * MIB, signature=None))
    status, _, body = await raw.answer()  # no body byte was sent: the answer came first
    assert status == 401
    assert json.loads(body)["error"]["code"] == "bad_signature"
    raw.close()


async def test_a_declared_length_over_25_mb_is_413_before_the_body_is_sent(
    client: AppClient,
) -> None:
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", 25 * MIB + 1))
    status, _, _ = await raw.answer()
    assert status == 413
    raw.close()


async def test_expect_100_continue_without_a_signature_gets_401_and_a_closed_connection(
    client: AppClient,
) -> None:
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", 1000, None, "Expect: 100-continue"))
    status, fields, _ = await raw.answer()
    assert (status, fields["connection"]) == (401, "close")
    assert await raw.closed_by_server()


async def test_expect_100_continue_with_a_signature_continues_and_is_accepted(
    client: AppClient,
) -> None:
    body = b'{"zen": "hi"}'
    signature = github_headers("ping", body)["X-Hub-Signature-256"]
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", len(body), signature, "Expect: 100-continue"))
    assert await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    await raw.send(body)
    status, _, _ = await raw.answer()
    assert status == 202
    raw.close()


async def test_a_gzip_bomb_is_413_once_25_mb_are_inflated(client: AppClient) -> None:
    bomb = gzip.compress(bytes(40 * MIB))
    headers = {**github_headers("ping", b"{}"), "Content-Encoding": "gzip"}
    response = await client.post("/webhooks/github", data=bomb, headers=headers)
    assert response.status == 413
    assert response.headers["Connection"] == "close"
    assert client.app[READ_BUDGET].held == 0


async def test_a_body_slower_than_the_deadline_is_408_and_its_connection_closed(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, webhook_body_timeout=0.2))
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", 1000) + b'{"zen": ')  # and nothing more
    status, fields, _ = await raw.answer()
    assert (status, fields["connection"]) == (408, "close")
    assert await raw.closed_by_server()
    assert client.app[READ_BUDGET].held == 0


async def test_bodies_beyond_the_read_budget_get_503_with_retry_after(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, webhook_read_budget_mb=1))
    slow = await RawConnection.to(client)
    await slow.send(head("/webhooks/github", 800 * 1024) + b"{")  # holds 800 KB of the budget
    await wait_until(lambda: client.app[READ_BUDGET].held, what="the slow body's share")
    response = await client.post(
        "/webhooks/github", data=bytes(300 * 1024), headers=github_headers("ping", b"")
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    await slow.send(bytes(800 * 1024 - 1))
    assert (await slow.answer())[0] == 401  # read whole, signature wrong: the budget is back
    assert client.app[READ_BUDGET].held == 0
    body = b'{"zen": "hi"}'
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body)
    )
    assert response.status == 202


async def test_a_client_gone_mid_body_gives_its_share_back_and_logs_no_error(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await RawConnection.to(client)
    await raw.send(head("/webhooks/github", 1000) + b'{"zen": ')
    await wait_until(lambda: client.app[READ_BUDGET].held, what="the body's share")
    raw.close()
    await wait_until(lambda: client.app[READ_BUDGET].held == 0, what="the share given back")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_garbage_gzip_body_is_400_and_logs_no_error(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await RawConnection.to(client)
    garbage = b"this is not gzip at all"
    await raw.send(
        head("/webhooks/github", len(garbage), WRONG, "Content-Encoding: gzip") + garbage
    )
    status, _, body = await raw.answer()
    assert (status, json.loads(body)["error"]["code"]) == (400, "malformed_body")
    assert await raw.closed_by_server()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_the_jira_route_refuses_an_unsigned_body_unread_too(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(
        make_settings(tmp_path, jira_webhook_secret=Secret(JIRA_WEBHOOK_SECRET))
    )
    raw = await RawConnection.to(client)
    await raw.send(b"POST /webhooks/jira HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n")
    assert (await raw.answer())[0] == 401
    raw.close()
    body = b'{"webhookEvent": "jira:issue_updated"}'
    headers = {**jira_headers(body), "Content-Encoding": "gzip"}
    response = await client.post("/webhooks/jira", data=gzip.compress(body), headers=headers)
    assert response.status == 202
