"""The current state of the object behind a followed stream (docs/design.md, Events).

A WebSocket client that resumes gets, after the replay of what it missed, one `state` message
per followed stream that names a pipeline (`pipeline:<id>`) or a pull request
(`pr:<owner>/<repo>#<number>`): the object as the API lists it now, so a resumed page is never
stale even when an event it depends on was pruned or never published. Other streams have no
object, and an object not (or no longer) stored gets no message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from bot.events.message import Event
from bot.pipelines.views import summary_of
from bot.reviews.overview import pull_request_row
from storage import pipelines, pull_requests
from storage.database import Database

_PIPELINE = re.compile(r"pipeline:(\d{1,18})")
_PULL_REQUEST = re.compile(r"pr:([^\s/#]+/[^\s/#]+)#(\d{1,18})")


class FollowedState(Event):
    """The current state of a followed pipeline or pull request, sent to a resuming WebSocket
    client after the replay (not kept in events).

    `kind` is pipeline or pull_request; `status` the pipeline's status or the pull request's
    state; `as_of` an event id the state includes everything up to; `detail` the object as
    `GET /api/pipelines` or `GET /api/pull-requests` lists it."""

    type_name: ClassVar[str] = "state"
    concern: ClassVar[str] = "events"
    kind: str
    status: str
    as_of: int
    detail: dict[str, Any]


async def state_of(db: Database, stream: str, *, as_of: int, now: datetime) -> FollowedState | None:
    """The state of the object `stream` names; None when it names none, or none stored."""
    if matched := _PIPELINE.fullmatch(stream):
        pipeline = await pipelines.get_pipeline(db, int(matched.group(1)))
        if pipeline is None:
            return None
        detail = msgspec.to_builtins(summary_of(pipeline))
        return FollowedState(kind="pipeline", status=pipeline.status, as_of=as_of, detail=detail)
    if matched := _PULL_REQUEST.fullmatch(stream):
        pr = await pull_requests.find_pull_request(db, matched.group(1), int(matched.group(2)))
        if pr is None:
            return None
        detail = await pull_request_row(db, pr, now)
        return FollowedState(kind="pull_request", status=pr.state, as_of=as_of, detail=detail)
    return None


async def states_of(
    db: Database, streams: Iterable[str], *, as_of: int, now: datetime
) -> list[tuple[str, FollowedState]]:
    """(stream, state) for each of `streams` that names a stored object, in stream order."""
    found = []
    for stream in sorted(streams):
        state = await state_of(db, stream, as_of=as_of, now=now)
        if state is not None:
            found.append((stream, state))
    return found
