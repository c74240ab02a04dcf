"""The pure decisions of browser sessions: what a tab follows, which sessions an event is
recorded for, and the socket presence they ask."""

from __future__ import annotations

import pytest

from bot.sessions.notable import NOTABLE_TYPES, group_tabs, sessions_to_tell
from bot.sessions.presence import Presence
from bot.sessions.tabs import MAX_TABS, BadTab, Tab, TabKind, checked_tabs, follows

PIPELINE = Tab(TabKind.PIPELINE, "5")
PR = Tab(TabKind.PR, "octo/repo#3")
TICKET = Tab(TabKind.TICKET, "ACME-7")
DASHBOARD = Tab(TabKind.DASHBOARD)


def test_the_notable_kinds_are_the_ones_a_person_acts_on() -> None:
    assert NOTABLE_TYPES == {
        "pipeline_failed",
        "pipeline_completed",
        "pipeline_cancelled",
        "clarification_requested",
        "risk_identified",
        "waiting_for_approval",
        "review_received",
        "pr_approved",
        "sync_error",
    }


@pytest.mark.parametrize(
    ("tab", "stream", "data", "expected"),
    [
        (PIPELINE, "pipeline:5", {}, True),
        (PIPELINE, "pipeline:50", {}, False),
        (PR, "pr:octo/repo#3", {}, True),
        (PR, "pr:octo/repo#30", {}, False),
        (TICKET, "jira:ACME", {}, True),
        (TICKET, "jira:*", {}, True),
        (TICKET, "jira:ACMEX", {}, False),
        (TICKET, "pipeline:9", {"ticket": "ACME-7"}, True),
        (TICKET, "pipeline:9", {"ticket": "ACME-70"}, False),
        (TICKET, "pr:octo/repo#3", {"ticket": "ACME-7"}, False),
        (DASHBOARD, "anything:at-all", {}, True),
        (Tab(TabKind.WORKTREES), "worktree:abc", {}, False),
        (Tab(TabKind.COSTS), "pipeline:5", {}, False),
    ],
)
def test_what_a_tab_follows(tab: Tab, stream: str, data: dict[str, str], expected: bool) -> None:
    assert follows(tab, stream, data) is expected


def test_an_event_is_for_the_sessions_that_follow_it_and_did_not_see_it_live() -> None:
    tabs = group_tabs([("a", PIPELINE), ("b", PIPELINE), ("b", PR), ("c", PR)])
    presence = Presence()
    presence.follow("socket of b", "b", ["pipeline:5"])
    assert sessions_to_tell("pipeline:5", {}, tabs, presence.sees_live) == ["a"]
    assert sessions_to_tell("pr:octo/repo#3", {}, tabs, presence.sees_live) == ["b", "c"]
    presence.leave("socket of b")
    assert sessions_to_tell("pipeline:5", {}, tabs, presence.sees_live) == ["a", "b"]


def test_a_socket_on_every_stream_sees_them_all_live() -> None:
    presence = Presence()
    presence.follow("socket", "a", None)
    assert presence.sees_live("a", "pr:x/y#1")
    assert not presence.sees_live("b", "pr:x/y#1")


def test_tabs_are_checked_for_shape_repetition_and_number() -> None:
    assert checked_tabs([Tab(TabKind.DASHBOARD, "")]) == [DASHBOARD]
    with pytest.raises(BadTab, match=r"tabs\[1\]: the same tab"):
        checked_tabs([DASHBOARD, Tab(TabKind.DASHBOARD, "")])
    with pytest.raises(BadTab, match=r"tabs\[1\]: the same tab"):
        checked_tabs([PIPELINE, Tab(TabKind.PIPELINE, "5")])
    with pytest.raises(BadTab, match=r"tabs\[0\]\.ref"):
        checked_tabs([Tab(TabKind.PIPELINE, "05")])
    with pytest.raises(BadTab, match="at most"):
        checked_tabs([Tab(TabKind.PIPELINE, str(n)) for n in range(1, MAX_TABS + 2)])
    assert checked_tabs([PIPELINE, PR, TICKET, DASHBOARD]) == [PIPELINE, PR, TICKET, DASHBOARD]
    pages = [Tab(TabKind.WORKTREES, ""), Tab(TabKind.COSTS)]
    assert checked_tabs(pages) == [Tab(TabKind.WORKTREES), Tab(TabKind.COSTS)]
    with pytest.raises(BadTab, match=r"tabs\[0\]\.ref: the costs tab names no object"):
        checked_tabs([Tab(TabKind.COSTS, "x")])
