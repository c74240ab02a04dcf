"""A session restored in one answer: its tabs and UI state, the current state of the pipelines
and pull requests its tabs show, its unread offline events and the token catch-up of the steps
running on its tabs' streams (docs/sessions.md, Restore).

The event id it was read at (`last_id`, with the bus `epoch`) is taken first: a page that
subscribes from it misses nothing that changed while the answer was being put together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from bot.agents.tokens import block_catchups, token_catchup
from bot.clock import Clock
from bot.events.bus import EventBus
from bot.pipelines.views import PipelineView, detail_of
from bot.reviews import overview
from bot.sessions.book import SessionBook
from bot.sessions.inbox import Inbox
from bot.sessions.tabs import Tab, TabKind, stream_of
from storage import agent_runs, pipelines, pull_requests
from storage.agent_runs import RunningStream
from storage.database import Database
from storage.offline_events import OfflineEventRow


class OfflineEventView(msgspec.Struct):
    """An offline event as the API and the `offline_event` frame show it."""

    offline_id: int
    recorded_at: str
    event: dict[str, Any]  # the envelope as published: id, type, stream, ts, data


def offline_view(row: OfflineEventRow) -> OfflineEventView:
    return OfflineEventView(row.id, row.recorded_at, row.event.envelope())


class Restored(msgspec.Struct):
    session_id: str
    epoch: str
    last_id: int
    tabs: list[Tab]
    ui_state: dict[str, Any]
    pipelines: list[PipelineView]
    pull_requests: list[dict[str, Any]]
    offline_events: list[OfflineEventView]
    unread: int
    token_catchup: list[dict[str, Any]]


async def running_stream_catchup(
    db: Database, clock: Clock, stream: str, after_seq: int, *, run_began_after: int = 0
) -> dict[str, Any]:
    """The token catch-up of one running stream after `after_seq`: the one call a restore makes
    for it. `block`: the stream's latest token block as the WebSocket's token_catchup carries it
    (snapshot, tail, state), when the run streamed it (its first seq after `run_began_after`);
    its cost stays flat however long the run streamed."""
    catchup = await token_catchup(db, clock, stream, after_seq)
    blocks = [
        msgspec.to_builtins(block)
        for block in await block_catchups(db, clock, [stream])
        if block.block > run_began_after
    ]
    return {**catchup.data(), "frames": catchup.frames, "block": blocks[0] if blocks else None}


@dataclass(frozen=True, slots=True)
class Restorer:
    db: Database
    clock: Clock
    bus: EventBus
    book: SessionBook
    inbox: Inbox

    async def restore(self, session_id: str, token_after: Mapping[str, int]) -> Restored:
        """`token_after`: per stream, the last token seq the page already holds (else the
        catch-up starts where the running step began)."""
        epoch, last_id = self.bus.epoch, self.bus.last_id
        await self.book.seen(session_id)
        session = await self.book.find(session_id)
        tabs = await self.book.tabs(session_id)
        unread = await self.inbox.unread(session_id)
        return Restored(
            session_id=session_id,
            epoch=epoch,
            last_id=last_id,
            tabs=tabs,
            ui_state=session.ui_state,
            pipelines=await self._pipelines(tabs),
            pull_requests=await self._pull_requests(tabs),
            offline_events=[offline_view(row) for row in unread.events],
            unread=unread.count,
            token_catchup=await self._catchups(tabs, token_after),
        )

    async def _pipelines(self, tabs: list[Tab]) -> list[PipelineView]:
        shown = []
        for tab in tabs:
            if tab.kind is TabKind.PIPELINE and tab.ref is not None:
                found = await pipelines.get_pipeline(self.db, int(tab.ref))
                if found is not None:
                    shown.append(await detail_of(self.db, found))
        return shown

    async def _pull_requests(self, tabs: list[Tab]) -> list[dict[str, Any]]:
        shown = []
        for tab in tabs:
            if tab.kind is TabKind.PR and tab.ref is not None:
                repository, number = tab.ref.rsplit("#", 1)
                found = await pull_requests.find_pull_request(self.db, repository, int(number))
                if found is not None:
                    now = self.clock.now()
                    shown.append(await overview.pull_request_detail(self.db, found, now))
        return shown

    async def _catchups(
        self, tabs: list[Tab], token_after: Mapping[str, int]
    ) -> list[dict[str, Any]]:
        streams = [stream for stream in map(stream_of, tabs) if stream is not None]
        running = await agent_runs.running_on(self.db, streams)
        return [await self._catchup(run, token_after.get(run.stream)) for run in running]

    async def _catchup(self, run: RunningStream, after_seq: int | None) -> dict[str, Any]:
        start = run.seq_before if after_seq is None else after_seq
        caught_up = await running_stream_catchup(
            self.db, self.clock, run.stream, start, run_began_after=run.seq_before
        )
        return {**caught_up, "run_id": run.run_id, "agent": run.agent}
