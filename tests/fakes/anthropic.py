"""A protocol fake of the Anthropic Messages API on loopback (docs/design.md, Testing).

`POST /v1/messages` answers scripted replies, in order, to the real `anthropic.AsyncAnthropic`
pointed at it by `base_url`:

- non-streaming JSON messages and SSE streams (`"stream": true`) with the real event sequence:
  message_start, content_block_start, ping, text_delta / input_json_delta pieces,
  content_block_stop, message_delta, message_stop;
- text and tool_use blocks; usage with input, output, cache_creation_input_tokens and
  cache_read_input_tokens, from a small model of prompt caching: each cache_control breakpoint
  writes the prefix up to it (tools, then system, then messages, block by block), and a later
  request reads the longest prefix written before (tokens are bytes / 4);
- errors with their real bodies: 429 rate_limit_error and 529 overloaded_error with
  retry-after, or any status;
- a stream broken after N events (the connection is dropped), a stream held after N events
  until the test lets it go on (`Hold`), and recorded SSE bodies replayed verbatim
  (tests/fixtures/anthropic/sse).

Every request is recorded (headers, body, time, cache accounting) in `fake.requests`. A script
item may be a `Reply` or a function of the request returning one (for open-ended loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "text" or "tool_use"
    text: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class Hold:
    """A point in a streamed reply where the fake waits (after `after_events` SSE events) until
    the test sets `released`; `reached` is set when it gets there. A client that goes away
    meanwhile ends the wait (the server cancels the handler)."""

    after_events: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Reply:
    blocks: tuple[Block, ...] = ()
    stop_reason: str | None = None  # default: tool_use when a tool_use block is there
    status: int = 200
    error_type: str | None = None
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    break_after_events: int | None = None
    raw_sse: str | None = None
    output_tokens: int | None = None
    delay_s: float = 0.0  # wait before answering (a slow turn a test can cut off)
    hold: Hold | None = None  # a streamed reply stops here until the test releases it


def text(content: str, **kwargs: Any) -> Reply:
    return Reply(blocks=(Block("text", text=content),), **kwargs)


def tool_use(
    name: str, arguments: dict[str, Any], *, say: str = "", id: str | None = None, **kwargs: Any
) -> Reply:
    blocks = ((Block("text", text=say),) if say else ()) + (
        Block("tool_use", name=name, input=arguments, id=id),
    )
    return Reply(blocks=blocks, **kwargs)


def tool_uses(*calls: tuple[str, dict[str, Any]], say: str = "") -> Reply:
    blocks = ((Block("text", text=say),) if say else ()) + tuple(
        Block("tool_use", name=name, input=arguments) for name, arguments in calls
    )
    return Reply(blocks=blocks)


def rate_limited(retry_after: float = 0.2) -> Reply:
    body = json.loads((FIXTURES / "error.429.json").read_text(encoding="utf-8"))["body"]
    return Reply(
        status=429,
        error_type="rate_limit_error",
        error_message=body["error"]["message"],
        headers={"retry-after": f"{retry_after:g}", "x-should-retry": "true"},
    )


def overloaded(retry_after: float = 0.2) -> Reply:
    return Reply(
        status=529,
        error_type="overloaded_error",
        error_message="Overloaded",
        headers={"retry-after": f"{retry_after:g}"},
    )


def recorded(name: str) -> Reply:
    """A recorded SSE body replayed byte for byte (tests/fixtures/anthropic/sse/NAME)."""
    return Reply(raw_sse=(FIXTURES / "sse" / name).read_text(encoding="utf-8"))


ScriptItem = Reply | Callable[["RecordedRequest"], Reply]


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    answered_at: float | None = None  # when the reply was fully written (the model's time)
    total_bytes: int = 0
    cache_read_bytes: int = 0
    cache_write_bytes: int = 0
    breakpoints: int = 0

    @property
    def api_key(self) -> str | None:
        """The key sent, as x-api-key or as a bearer token (newer SDKs send the latter)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        bearer = self.headers.get("authorization", "")
        return bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last user message."""
        last = self.messages[-1] if self.messages else {}
        content = last.get("content")
        if not isinstance(content, list):
            return []
        return [block for block in content if block.get("type") == "tool_result"]


def _strip_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_control(item) for item in value]
    return value


def linearize(body: dict[str, Any]) -> list[tuple[bytes, bool]]:
    """The prompt as the cache sees it: (block bytes, has a breakpoint), tools-system-messages."""
    blocks: list[tuple[bytes, bool]] = []

    def add(label: str, item: Any) -> None:
        marked = isinstance(item, dict) and "cache_control" in item
        encoded = json.dumps([label, _strip_cache_control(item)], sort_keys=True).encode()
        blocks.append((encoded, marked))

    for tool in body.get("tools") or []:
        add("tool", tool)
    system = body.get("system")
    if isinstance(system, str):
        add("system", {"type": "text", "text": system})
    elif isinstance(system, list):
        for item in system:
            add("system", item)
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            add(message["role"], {"type": "text", "text": content})
        else:
            for item in content or []:
                add(message["role"], item)
    return blocks


class FakeAnthropic:
    def __init__(self, *, chunk_size: int = 6, pause_between_events_s: float = 0.0) -> None:
        self.chunk_size = chunk_size
        self.pause_between_events_s = pause_between_events_s
        self.script: deque[ScriptItem] = deque()
        self.requests: list[RecordedRequest] = []
        self.cache: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: TestServer | None = None
        self._arrived = asyncio.Condition()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    def add(self, *items: ScriptItem) -> None:
        self.script.extend(items)

    async def wait_for_requests(self, count: int) -> None:
        """Return once `count` requests have arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    # -- accounting -------------------------------------------------------------------------

    def _account(self, recorded: RecordedRequest) -> tuple[int, int, int]:
        """(input, cache write, cache read) tokens, updating the cache with the breakpoints."""
        blocks = linearize(recorded.body)
        digest = hashlib.sha256()
        prefix_keys: list[str] = []
        prefix_sizes: list[int] = []
        size = 0
        for encoded, _ in blocks:
            digest.update(encoded)
            size += len(encoded)
            prefix_keys.append(digest.copy().hexdigest())
            prefix_sizes.append(size)
        marks = [index for index, (_, marked) in enumerate(blocks) if marked]
        read = 0
        for index in range(len(blocks) - 1, -1, -1):
            if prefix_keys[index] in self.cache and (not marks or index <= marks[-1]):
                read = prefix_sizes[index]
                break
        written_upto = prefix_sizes[marks[-1]] if marks else 0
        write = max(0, written_upto - read)
        for index in marks:
            self.cache[prefix_keys[index]] = prefix_sizes[index]
        recorded.total_bytes = size
        recorded.cache_read_bytes = read
        recorded.cache_write_bytes = write
        recorded.breakpoints = len(marks)
        uncached = size - read - write

        def tokens(count: int) -> int:
            return math.ceil(count / BYTES_PER_TOKEN)

        return tokens(uncached), tokens(write), tokens(read)

    # -- the endpoint -----------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        recorded = RecordedRequest(
            path=request.path_qs,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        self.requests.append(recorded)
        async with self._arrived:
            self._arrived.notify_all()
        if not recorded.api_key:
            return self._error(401, "authentication_error", "x-api-key header is required", {})
        if not self.script:
            return self._error(
                500, "api_error", "fake script exhausted", {"x-should-retry": "false"}
            )
        item = self.script.popleft()
        reply = item(recorded) if callable(item) else item
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            return self._error(
                reply.status, reply.error_type or "api_error", reply.error_message, reply.headers
            )
        if reply.raw_sse is not None:
            response = web.Response(
                body=reply.raw_sse.encode(), content_type="text/event-stream", charset="utf-8"
            )
            return response
        input_tokens, write_tokens, read_tokens = self._account(recorded)
        message = self._message(reply, body, input_tokens, write_tokens, read_tokens)
        if body.get("stream"):
            streamed = await self._stream(request, reply, message)
            recorded.answered_at = time.monotonic()
            return streamed
        recorded.answered_at = time.monotonic()
        return web.json_response(message, headers={"request-id": f"req_fake_{next(self._ids)}"})

    def _error(
        self, status: int, error_type: str, message: str, headers: dict[str, str]
    ) -> web.Response:
        payload = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_fake_{next(self._ids)}",
        }
        return web.json_response(payload, status=status, headers=headers)

    def _message(
        self,
        reply: Reply,
        body: dict[str, Any],
        input_tokens: int,
        write_tokens: int,
        read_tokens: int,
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for block in reply.blocks:
            if block.kind == "text":
                content.append({"type": "text", "text": block.text})
            else:
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.id or f"toolu_fake_{next(self._ids):04d}",
                        "name": block.name,
                        "input": block.input,
                    }
                )
        stop_reason = reply.stop_reason or (
            "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        )
        produced = sum(len(json.dumps(block)) for block in content)
        return {
            "id": f"msg_fake_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", MODEL),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": write_tokens,
                "cache_read_input_tokens": read_tokens,
                "output_tokens": reply.output_tokens or max(1, produced // BYTES_PER_TOKEN),
            },
        }

    def _events(self, message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**usage, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening = {"type": "text", "text": ""}
                pieces = [
                    {"type": "text_delta", "text": block["text"][i : i + self.chunk_size]}
                    for i in range(0, len(block["text"]), self.chunk_size)
                ]
            else:
                opening = {**block, "input": {}}
                encoded = json.dumps(block["input"])
                pieces = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": encoded[i : i + self.chunk_size]}
                    for i in range(0, len(encoded), self.chunk_size)
                ]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            for piece in pieces:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": piece},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    async def _stream(
        self, request: web.Request, reply: Reply, message: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": f"req_fake_{next(self._ids)}",
            }
        )
        await response.prepare(request)
        for count, (name, payload) in enumerate(self._events(message)):
            if reply.hold is not None and count == reply.hold.after_events:
                reply.hold.reached.set()
                await reply.hold.released.wait()
            if reply.break_after_events is not None and count >= reply.break_after_events:
                # Drop the connection mid-stream, as a network failure would.
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
            if self.pause_between_events_s:
                await asyncio.sleep(self.pause_between_events_s)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
