"""What a sandboxed command printed (bot/isolation/sandbox.py): kept within a cap (the head and
the tail, or only the first bytes when the command is stopped at the cap) and streamed line by
line to a callback until the cap."""

from __future__ import annotations

import codecs
import inspect
from collections import deque
from collections.abc import Awaitable, Callable

LineCallback = Callable[[str], Awaitable[None] | None]


class OutputCollector:
    """Keeps the output within the cap and streams lines until the cap.

    By default the head and the tail are kept and the middle is cut; with `stop_at_cap`, the
    first `cap_bytes` bytes exactly, and `full` tells the caller to stop the command.
    """

    def __init__(
        self, cap_bytes: int, on_line: LineCallback | None, *, stop_at_cap: bool = False
    ) -> None:
        self.half = max(1, cap_bytes // 2)
        self.cap_bytes = cap_bytes
        self.on_line = on_line
        self.stop_at_cap = stop_at_cap
        self.first_bytes = bytearray()
        self.head: list[str] = []
        self.head_bytes = 0
        self.tail: deque[str] = deque()
        self.tail_bytes = 0
        self.cut_bytes = 0
        self.streamed_bytes = 0
        self.stream_closed = False
        self.partial = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def truncated(self) -> bool:
        return self.cut_bytes > 0

    @property
    def full(self) -> bool:
        return self.stop_at_cap and self.truncated

    async def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if self.stop_at_cap:
            room = self.cap_bytes - len(self.first_bytes)
            if len(chunk) > room:
                self.cut_bytes += len(chunk) - room
                chunk = chunk[:room]
            self.first_bytes += chunk
        text = self.partial + self.decoder.decode(chunk, final=final)
        lines = text.split("\n")
        if final:
            self.partial = ""
            if lines[-1] == "":
                lines.pop()
        else:
            self.partial = lines.pop()
            if len(self.partial) > self.half:  # one endless line: keep it bounded
                lines.append(self.partial)
                self.partial = ""
        for line in lines:
            await self._line(line)

    async def _line(self, line: str) -> None:
        size = len(line.encode("utf-8", errors="replace")) + 1
        if not self.stop_at_cap:  # with stop_at_cap, feed keeps the first bytes as they are
            self._keep_head_or_tail(line, size)
        await self._stream(line, size)

    def _keep_head_or_tail(self, line: str, size: int) -> None:
        if self.head_bytes + size <= self.half and not self.tail:
            self.head.append(line)
            self.head_bytes += size
            return
        self.tail.append(line)
        self.tail_bytes += size
        while self.tail_bytes > self.half and len(self.tail) > 1:
            dropped = self.tail.popleft()
            dropped_size = len(dropped.encode("utf-8", errors="replace")) + 1
            self.tail_bytes -= dropped_size
            self.cut_bytes += dropped_size

    async def _stream(self, line: str, size: int) -> None:
        if self.on_line is None or self.stream_closed:
            return
        self.streamed_bytes += size
        if self.streamed_bytes > self.cap_bytes:
            self.stream_closed = True
            line = f"[output capped at {self.cap_bytes} bytes; the rest is not streamed]"
        outcome = self.on_line(line)
        if inspect.isawaitable(outcome):
            await outcome

    def text(self) -> str:
        if self.stop_at_cap:
            return self.first_bytes.decode("utf-8", errors="replace")
        parts = list(self.head)
        if self.cut_bytes:
            parts.append(f"[... {self.cut_bytes} bytes of output cut ...]")
        parts += list(self.tail)
        return "\n".join(parts)
