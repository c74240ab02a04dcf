"""The message types the JIRA concern emits: sync runs and mirrored ticket changes.

Published on a project's stream (`jira:PROJ`, or `jira:*` for a failure to list projects) by
the sync (bot/jira/sync.py, bot/jira/mirror.py) and the webhook refresh (bot/jira/refresh.py).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from bot.events.message import Event
from storage.jira_sync import SyncKind


class SyncProgress(Event):
    """A JIRA sync stored another page (done: issues seen so far)."""

    type_name: ClassVar[str] = "sync_progress"
    concern: ClassVar[str] = "jira"
    project: str
    done: int
    total: int | None = None
    run_id: int | None = None


class SyncComplete(Event):
    """A JIRA sync finished."""

    type_name: ClassVar[str] = "sync_complete"
    concern: ClassVar[str] = "jira"
    project: str
    created: int
    updated: int
    deleted: int
    duration_s: float
    run_id: int | None = None
    kind: SyncKind | None = None
    seen: int | None = None
    requests: int | None = None


class SyncError(Event):
    """A JIRA sync failed."""

    type_name: ClassVar[str] = "sync_error"
    concern: ClassVar[str] = "jira"
    project: str
    error: str
    run_id: int | None = None
    kind: SyncKind | None = None


class TicketFields(msgspec.Struct, kw_only=True):
    """The fields a ticket list shows, sent with a changed ticket."""

    status: str | None
    summary: str


class TicketUpdated(Event):
    """One mirrored ticket changed (a webhook), was created or deleted."""

    type_name: ClassVar[str] = "ticket_updated"
    concern: ClassVar[str] = "jira"
    key: str
    fields: TicketFields | None = None
    project: str | None = None
    created: bool | None = None
    deleted: bool | None = None


class TicketsUpdated(Event):
    """A batch of mirrored tickets changed (a sync page), with those created or deleted."""

    type_name: ClassVar[str] = "tickets_updated"
    concern: ClassVar[str] = "jira"
    keys: list[str]
    project: str | None = None
    created: list[str] | None = None
    deleted: list[str] | None = None
