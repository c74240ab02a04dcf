"""The browser's way to the server, as a TCP proxy on loopback that a test can cut and restore.

The page is opened through the gate's port; the test talks to the server directly. While the
gate is shut, every connection through it is cut and new ones are closed at once, as when a
laptop loses its network: the server runs, and the page cannot reach it until the gate opens.
Bytes pass unchanged (the Host header names the gate, so cookies and the Origin check hold).
"""

from __future__ import annotations

import asyncio
import contextlib


class NetworkGate:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.is_open = True
        self.port = 0  # the gate's own, once started
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free loopback port (`port`)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def shut(self) -> None:
        """Cut every connection through the gate; refuse new ones until `open()`."""
        self.is_open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def open(self) -> None:
        self.is_open = True

    async def close(self) -> None:
        self.shut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        if self.is_open:
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        if upstream is None or not self.is_open:
            writer.transport.abort()
            if upstream is not None:
                upstream[1].transport.abort()
            return
        self._writers.update((writer, upstream[1]))
        try:
            await asyncio.gather(_pump(reader, upstream[1]), _pump(upstream[0], writer))
        finally:
            for end in (writer, upstream[1]):
                self._writers.discard(end)
                end.transport.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then the other side is ended too."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    sink.transport.abort()
