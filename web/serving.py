"""Serving the app on its port within what the process can hold: what `python -m bot` runs once
the app is built (docs/design.md, Layers: bot/__main__.py is the entry point, this its web half).

- The soft open-file limit is raised to the hard one at start-up, and the log says so
  (`raise_open_file_limit`).
- A connection idle for HTTP_KEEPALIVE_TIMEOUT is closed, one that never sends a whole request
  included (aiohttp's keepalive_timeout runs from the connection's start).
- At MAX_CONNECTIONS open connections a new connection is answered `503` with Retry-After and
  closed at once (`ConnectionGate`): the process keeps descriptors for its database, its own
  clients and the next `/healthz`, where running out would fail every accept with a traceback.
  By default that is 90% of the open-file limit less the listen backlog, since asyncio accepts
  up to a backlog of sockets in one go, each holding a descriptor before the gate sees it.
- SIGINT and SIGTERM stop it: the sites close, then the app's cleanup contexts run in reverse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.config import Settings

log = logging.getLogger(__name__)

SHARE_OF_OPEN_FILES = 0.9
BACKLOG = 128  # aiohttp's, and asyncio's most accepts in one go
RETRY_AFTER_SECONDS = 1
_SHED_BODY = json.dumps(
    {"error": {"code": "overloaded", "message": "too many open connections; retry shortly"}}
).encode()
SHED_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: %d\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % (RETRY_AFTER_SECONDS, len(_SHED_BODY))
) + _SHED_BODY


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        log.info("open-file limit: %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        log.warning("open-file limit stays %d: raising it to %d failed (%s)", soft, hard, error)
        return soft
    log.info("open-file limit raised from %d to %d (the hard limit)", soft, hard)
    return hard


class _Shed(asyncio.Protocol):
    """A connection over the limit: answered 503 and closed, its request never read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(SHED_ANSWER)
        transport.close()


class _Counted(asyncio.Protocol):
    """The server's protocol for one connection, passed every call; tells the gate its end."""

    __slots__ = ("_gate", "_inner")

    def __init__(self, inner: asyncio.Protocol, gate: ConnectionGate) -> None:
        self._inner = inner
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.closed()
        self._inner.connection_lost(exc)


class ConnectionGate:
    """The listening socket's protocol factory: counts open connections (from the moment they
    are accepted) and sheds new ones while `limit` are open."""

    def __init__(self, serve: Callable[[], asyncio.Protocol], limit: int) -> None:
        self._serve = serve  # aiohttp's web.Server: a new RequestHandler per call
        self.limit = limit
        self.open = 0
        self.shed = 0
        self._shedding = False

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            self.shed += 1
            if not self._shedding:
                self._shedding = True
                log.warning("%d connections open, the limit: new ones get 503", self.limit)
            return _Shed()
        self._shedding = False
        self.open += 1
        return _Counted(self._serve(), self)

    def closed(self) -> None:
        self.open -= 1


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass a `ConnectionGate` (aiohttp's TCPSite, gated)."""

    __slots__ = ("_host", "_limit", "_port", "gate")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limit: int) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._limit = limit
        self.gate: ConnectionGate | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        assert self._runner.server is not None  # BaseSite refuses a runner not set up
        self.gate = ConnectionGate(self._runner.server, self._limit)
        self._server = await asyncio.get_running_loop().create_server(
            self.gate, self._host, self._port, backlog=self._backlog
        )


async def serve(
    app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger]
) -> None:
    """Serve `app` on HOST:PORT until SIGINT or SIGTERM, then clean it up."""
    open_files = raise_open_file_limit()
    limit = settings.max_connections or max(1, int(open_files * SHARE_OF_OPEN_FILES) - BACKLOG)
    keepalive = settings.http_keepalive_timeout
    log.info("at most %d open connections; idle ones close after %gs", limit, keepalive)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log_class=access_log_class, keepalive_timeout=keepalive)
    await runner.setup()
    try:
        await GuardedSite(runner, settings.host, settings.port, limit).start()
        await stop.wait()
    finally:
        await runner.cleanup()
