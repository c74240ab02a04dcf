"""The JIRA mirror's records: what the sync stores and what the API and the CLI read back.

`TicketRecord` (with its `LinkEnd`s and `AttachmentMeta`) is a ticket as normalized from Jira's
JSON by bot/jira/issues.py and written by storage/ticket_writes.py; `Ticket` and
`TicketSummary` are what storage/tickets.py reads back; `TicketFilter` chooses a listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TicketLink:
    """One issue link as seen from one end."""

    link_id: str
    direction: str  # outward or inward
    link_type: str
    relation: str  # "blocks", "is blocked by"
    other_id: str
    other_key: str
    other_summary: str | None = None
    other_status: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "direction": self.direction,
            "type": self.link_type,
            "relation": self.relation,
            "key": self.other_key,
            "id": self.other_id,
            "summary": self.other_summary,
            "status": self.other_status,
        }


@dataclass(frozen=True, slots=True)
class LinkEnd:
    """A link to store: from `ticket_id`, with the wording for both directions."""

    ticket_id: str
    ticket_key: str
    link: TicketLink
    reverse_relation: str


@dataclass(frozen=True, slots=True)
class AttachmentMeta:
    id: str
    ticket_id: str
    filename: str
    mime_type: str | None
    size: int | None
    author: str | None
    created_at: str | None
    content_url: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size": self.size,
            "author": self.author,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """A ticket as the sync stores it (normalized from Jira's JSON by bot/jira/issues.py)."""

    id: str
    key: str
    project: str
    summary: str
    description: str | None
    status: str | None
    status_category: str | None
    issue_type: str | None
    priority: str | None
    assignee: str | None
    reporter: str | None
    resolution: str | None
    labels: tuple[str, ...]
    components: tuple[str, ...]
    parent_key: str | None
    subtask_keys: tuple[str, ...]
    comments: tuple[dict[str, Any], ...]
    changelog: tuple[dict[str, Any], ...]
    created_at: str | None
    updated_at: str
    updated_ms: int
    links: tuple[LinkEnd, ...] = field(default=())
    attachments: tuple[AttachmentMeta, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TicketSummary:
    id: str
    key: str
    project: str
    summary: str
    status: str | None
    issue_type: str | None
    priority: str | None
    assignee: str | None
    labels: tuple[str, ...]
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project,
            "summary": self.summary,
            "status": self.status,
            "type": self.issue_type,
            "priority": self.priority,
            "assignee": self.assignee,
            "labels": list(self.labels),
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    key: str
    project: str
    summary: str
    description: str | None
    status: str | None
    status_category: str | None
    issue_type: str | None
    priority: str | None
    assignee: str | None
    reporter: str | None
    resolution: str | None
    labels: tuple[str, ...]
    components: tuple[str, ...]
    parent_key: str | None
    subtask_keys: tuple[str, ...]
    comments: tuple[dict[str, Any], ...]
    changelog: tuple[dict[str, Any], ...]
    created_at: str | None
    updated_at: str
    updated_ms: int
    synced_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "project": self.project,
            "summary": self.summary,
            "description": self.description,
            "status": self.status,
            "status_category": self.status_category,
            "type": self.issue_type,
            "priority": self.priority,
            "assignee": self.assignee,
            "reporter": self.reporter,
            "resolution": self.resolution,
            "labels": list(self.labels),
            "components": list(self.components),
            "parent": self.parent_key,
            "subtasks": list(self.subtask_keys),
            "comments": list(self.comments),
            "changelog": list(self.changelog),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "synced_at": self.synced_at,
        }


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    created: tuple[str, ...]  # keys
    updated: tuple[str, ...]
    unchanged: int


@dataclass(frozen=True, slots=True)
class TicketFilter:
    project: str | None = None
    status: str | None = None
    assignee: str | None = None
    issue_type: str | None = None
    priority: str | None = None
    label: str | None = None
    text: str | None = None
    updated_since: str | None = None
