"""A session's tabs: their kinds, the shape of what each names, and the streams each follows.

Pure decisions, no I/O (docs/sessions.md). A tab is `{"kind": ..., "ref": ...}`:

| kind | ref | follows |
| --- | --- | --- |
| `pipeline` | the pipeline id, `"12"` | `pipeline:12` |
| `pr` | `"owner/repo#3"` | `pr:owner/repo#3` |
| `ticket` | `"ACME-7"` | `jira:ACME`, `jira:*` (syncs) and its pipelines' events |
| `dashboard` | none | every stream |
| `worktrees`, `costs` | none | no stream: pages of figures, no event on them is notable |
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import msgspec

MAX_TABS = 50

_PIPELINE_REF = re.compile(r"[1-9][0-9]{0,17}")
_PR_REF = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}#[1-9][0-9]{0,9}")
_TICKET_REF = re.compile(r"[A-Z][A-Z0-9_]{0,49}-[0-9]{1,12}")


class TabKind(StrEnum):
    PIPELINE = "pipeline"
    PR = "pr"
    TICKET = "ticket"
    DASHBOARD = "dashboard"
    WORKTREES = "worktrees"
    COSTS = "costs"


# The kinds that name no object: one page each.
SINGLE_PAGES = frozenset({TabKind.DASHBOARD, TabKind.WORKTREES, TabKind.COSTS})


class Tab(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One open tab, as the API takes and gives it."""

    kind: TabKind
    ref: str | None = None


class BadTab(ValueError):
    """A tab whose ref does not fit its kind; the message names the tab (`tabs[2].ref: ...`)."""


_REF_SHAPES: dict[TabKind, tuple[re.Pattern[str], str]] = {
    TabKind.PIPELINE: (_PIPELINE_REF, "a pipeline id (digits)"),
    TabKind.PR: (_PR_REF, "owner/repo#number"),
    TabKind.TICKET: (_TICKET_REF, "a ticket key like ACME-12"),
}


def checked_tabs(tabs: Sequence[Tab]) -> list[Tab]:
    """`tabs` if each names its object in its kind's shape and none repeats; else BadTab."""
    if len(tabs) > MAX_TABS:
        raise BadTab(f"tabs: at most {MAX_TABS} tabs")
    seen: set[Tab] = set()
    for position, tab in enumerate(tabs):
        where = f"tabs[{position}]"
        if tab.kind in SINGLE_PAGES:
            if tab.ref:
                raise BadTab(f"{where}.ref: the {tab.kind} tab names no object")
            tab = Tab(tab.kind)
        else:
            shape, words = _REF_SHAPES[tab.kind]
            if tab.ref is None or not shape.fullmatch(tab.ref):
                raise BadTab(f"{where}.ref: a {tab.kind} tab's ref is {words}")
        if tab in seen:
            raise BadTab(f"{where}: the same tab is open twice")
        seen.add(tab)
    return [Tab(tab.kind, tab.ref or None) for tab in tabs]


def stream_of(tab: Tab) -> str | None:
    """The one stream a pipeline or PR tab shows (its tokens, its current state); None else."""
    if tab.kind is TabKind.PIPELINE:
        return f"pipeline:{tab.ref}"
    if tab.kind is TabKind.PR:
        return f"pr:{tab.ref}"
    return None


def follows(tab: Tab, stream: str, data: Mapping[str, Any]) -> bool:
    """Whether an event on `stream` with `data` is on what `tab` shows."""
    if tab.kind is TabKind.DASHBOARD:
        return True
    if tab.kind is TabKind.TICKET:
        ticket = tab.ref or ""
        project = ticket.rsplit("-", 1)[0]
        if stream in (f"jira:{project}", "jira:*"):
            return True
        return stream.startswith("pipeline:") and data.get("ticket") == ticket
    return stream == stream_of(tab)
