"""One streamed turn: a Messages API call whose text becomes token frames as it arrives.

`TurnStreamer.stream(request)` gives the turn's final Message when the stream ran to its end.
Each text block's frames form a token block (bot/agents/tokens.py) that ends completed at
the block's stop, or interrupted when the stream breaks or the API refuses mid-turn.
A stream that breaks is never half-used: it gives an `Interrupted` (what arrived, whether a
tool_use had begun, what the API billed so far), which the loop records before asking the turn
again. A request the API refuses (after the SDK's own retries) raises `TurnFailed`. Both carry
the typed FailureKind decided here, where the exception is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.lib.streaming import AsyncMessageStream, ParsedMessageStreamEvent
from anthropic.types import Message

from bot.agents.failures import FailureKind, described, failure_kind
from bot.agents.messages import block_dict
from bot.agents.tokens import TokenCoalescer
from storage.token_blocks import BlockState


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A turn whose stream broke before message_stop."""

    reason: str
    kind: FailureKind
    tool_use_started: bool
    partial: list[dict[str, Any]]
    usage: Any = None  # what message_start (and any delta) billed before the break, if it came


class TurnFailed(Exception):
    """The API refused the turn (after the SDK's own retries)."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def billed_so_far(stream: AsyncMessageStream) -> Any:
    """The usage of a stream that broke: message_start's input tokens and any output counted
    since, or None when it broke before message_start."""
    try:
        return stream.current_message_snapshot.usage
    except (AssertionError, AttributeError, RuntimeError):
        return None


@dataclass
class _Progress:
    """What a turn's stream delivered so far."""

    partial: list[dict[str, Any]] = field(default_factory=list)
    tool_use_started: bool = False

    def interrupted(self, reason: str, kind: FailureKind, usage: Any) -> Interrupted:
        return Interrupted(reason, kind, self.tool_use_started, self.partial, usage)


class TurnStreamer:
    """Streams turns through one client, their text through one coalescer."""

    def __init__(self, client: anthropic.AsyncAnthropic, coalescer: TokenCoalescer) -> None:
        self.client = client
        self.coalescer = coalescer

    async def stream(self, request: dict[str, Any]) -> Message | Interrupted:
        """The turn's final Message, or Interrupted; raises TurnFailed when the API refuses."""
        progress = _Progress()
        try:
            async with self.client.messages.stream(**request) as stream:
                broken = await self._read(stream, progress)
                if broken is not None:  # the connection or the stream broke
                    await self.coalescer.end_block(BlockState.INTERRUPTED)
                    kind = failure_kind(broken, otherwise=FailureKind.STREAM_BROKEN)
                    return progress.interrupted(described(broken), kind, billed_so_far(stream))
                snapshot = stream.current_message_snapshot
                if snapshot.stop_reason is None:
                    await self.coalescer.end_block(BlockState.INTERRUPTED)
                    return progress.interrupted(
                        "the stream ended before message_stop",
                        FailureKind.STREAM_BROKEN,
                        snapshot.usage,
                    )
                await self.coalescer.end_block(BlockState.COMPLETED)
                return await stream.get_final_message()
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as error:
            await self.coalescer.end_block(BlockState.INTERRUPTED)
            raise TurnFailed(failure_kind(error), described(error)) from error

    async def _read(self, stream: AsyncMessageStream, progress: _Progress) -> BaseException | None:
        """Take the stream's events until it ends (None) or breaks (the error)."""
        events = stream.__aiter__()
        while True:
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                return None
            except Exception as error:
                return error
            await self._take(event, progress)

    async def _take(self, event: ParsedMessageStreamEvent[None], progress: _Progress) -> None:
        if event.type == "text":
            await self.coalescer.add(event.text)
        elif event.type == "content_block_start":
            progress.partial.append(block_dict(event.content_block))
            if event.content_block.type == "tool_use":
                progress.tool_use_started = True
        elif event.type == "content_block_stop":
            await self.coalescer.end_block(BlockState.COMPLETED)
            if progress.partial:
                progress.partial[-1] = block_dict(event.content_block)
