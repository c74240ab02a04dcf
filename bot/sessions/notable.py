"""Which events become offline events, and for which sessions: a pure decision (docs/sessions.md).

An event matters to a session when its type is one a person acts on or wants to know of
(`NOTABLE_TYPES`: a pipeline failed or finished, a question asked, a risk or a plan waiting, a
review received, a PR approved, a JIRA sync error), one of the session's tabs follows its stream,
and no connected socket of the session is subscribed to that stream (it saw the event live).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bot.agents.events import ClarificationRequested
from bot.jira.events import SyncError
from bot.pipelines.events import (
    PipelineCancelled,
    PipelineCompleted,
    PipelineFailed,
    RiskIdentified,
    WaitingForApproval,
)
from bot.reviews.events import PrApproved, ReviewReceived
from bot.sessions.tabs import Tab, follows

NOTABLE_TYPES: frozenset[str] = frozenset(
    kind.type_name
    for kind in (
        PipelineFailed,
        PipelineCompleted,
        PipelineCancelled,
        ClarificationRequested,
        RiskIdentified,
        WaitingForApproval,
        ReviewReceived,
        PrApproved,
        SyncError,
    )
)


def sessions_to_tell(
    stream: str,
    data: Mapping[str, Any],
    tabs_by_session: Mapping[str, Sequence[Tab]],
    sees_live: Callable[[str, str], bool],
) -> list[str]:
    """The sessions (sorted) whose tabs follow the event and that did not see it live;
    `sees_live(session_id, stream)` says whether a socket of the session follows the stream."""
    return sorted(
        session_id
        for session_id, tabs in tabs_by_session.items()
        if any(follows(tab, stream, data) for tab in tabs) and not sees_live(session_id, stream)
    )


def group_tabs(rows: Iterable[tuple[str, Tab]]) -> dict[str, list[Tab]]:
    """(session id, tab) pairs as each session's list of tabs."""
    grouped: dict[str, list[Tab]] = {}
    for session_id, tab in rows:
        grouped.setdefault(session_id, []).append(tab)
    return grouped
