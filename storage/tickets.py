"""The JIRA mirror: tickets, their links (stored from both ends) and attachment metadata.

The sync service and the webhook concern write here through `store_tickets` (a batch, one
transaction) and `delete_tickets`; the API and the CLI read. A write never replaces a ticket
with an older version of itself (`updated_ms` only goes forward), so a slow fetch racing a
webhook cannot undo a newer change.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from storage.database import Database
from storage.timestamps import to_text


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


_TICKET_COLUMNS = (
    "id, key, project, summary, description, status, status_category, issue_type, priority,"
    " assignee, reporter, resolution, labels, components, parent_key, subtask_keys, comments,"
    " changelog, created_at, updated_at, updated_ms, synced_at"
)
_SUMMARY_COLUMNS = (
    "id, key, project, summary, status, issue_type, priority, assignee, labels, updated_at"
)

_UPSERT_TICKET = f"""
    INSERT INTO tickets ({_TICKET_COLUMNS})
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        key = excluded.key, project = excluded.project, summary = excluded.summary,
        description = excluded.description, status = excluded.status,
        status_category = excluded.status_category, issue_type = excluded.issue_type,
        priority = excluded.priority, assignee = excluded.assignee,
        reporter = excluded.reporter, resolution = excluded.resolution,
        labels = excluded.labels, components = excluded.components,
        parent_key = excluded.parent_key, subtask_keys = excluded.subtask_keys,
        comments = excluded.comments, changelog = excluded.changelog,
        created_at = excluded.created_at, updated_at = excluded.updated_at,
        updated_ms = excluded.updated_ms, synced_at = excluded.synced_at
"""
_INSERT_LINK = """
    INSERT INTO ticket_links
        (ticket_id, link_id, direction, link_type, relation, other_id, other_key,
         other_summary, other_status)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ticket_id, link_id) DO UPDATE SET
        direction = excluded.direction, link_type = excluded.link_type,
        relation = excluded.relation, other_id = excluded.other_id,
        other_key = excluded.other_key, other_summary = excluded.other_summary,
        other_status = excluded.other_status
"""
_INSERT_ATTACHMENT = """
    INSERT INTO ticket_attachments
        (id, ticket_id, filename, mime_type, size, author, created_at, content_url)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        ticket_id = excluded.ticket_id, filename = excluded.filename,
        mime_type = excluded.mime_type, size = excluded.size, author = excluded.author,
        created_at = excluded.created_at, content_url = excluded.content_url
"""
# SQLite's default limit on bound parameters is 999 in old builds; stay well under it.
_CHUNK = 400


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def _ticket_row(record: TicketRecord, synced_at: str) -> tuple[Any, ...]:
    return (
        record.id,
        record.key,
        record.project,
        record.summary,
        record.description,
        record.status,
        record.status_category,
        record.issue_type,
        record.priority,
        record.assignee,
        record.reporter,
        record.resolution,
        json.dumps(list(record.labels)),
        json.dumps(list(record.components)),
        record.parent_key,
        json.dumps(list(record.subtask_keys)),
        json.dumps(list(record.comments), separators=(",", ":")),
        json.dumps(list(record.changelog), separators=(",", ":")),
        record.created_at,
        record.updated_at,
        record.updated_ms,
        synced_at,
    )


def _link_rows(records: Sequence[TicketRecord]) -> list[tuple[Any, ...]]:
    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    for record in records:
        for end in record.links:
            link = end.link
            rows[(end.ticket_id, link.link_id)] = (
                end.ticket_id,
                link.link_id,
                link.direction,
                link.link_type,
                link.relation,
                link.other_id,
                link.other_key,
                link.other_summary,
                link.other_status,
            )
            rows[(link.other_id, link.link_id)] = (
                link.other_id,
                link.link_id,
                "inward" if link.direction == "outward" else "outward",
                link.link_type,
                end.reverse_relation,
                end.ticket_id,
                end.ticket_key,
                record.summary,
                record.status,
            )
    return list(rows.values())


async def store_tickets(
    db: Database, records: Sequence[TicketRecord], *, now: datetime
) -> StoreOutcome:
    """Upsert a batch with its links and attachments in one transaction.

    A record whose `updated_ms` is older than the stored one is dropped (a stale fetch). One
    equal to it is not an update (a full sync or a webhook refetching an unchanged issue must
    not announce it): it is counted unchanged, and rewritten only when what it holds differs
    from the stored ticket, links or attachments (a repair, such as a linked issue's new
    summary).
    """
    if not records:
        return StoreOutcome((), (), 0)
    latest: dict[str, TicketRecord] = {}
    for record in records:
        kept = latest.get(record.id)
        if kept is None or record.updated_ms >= kept.updated_ms:
            latest[record.id] = record
    synced_at = to_text(now)
    async with db.transaction() as connection:
        stored: dict[str, int] = {}
        ids = list(latest)
        for chunk in _chunks(ids):
            async with connection.execute(
                f"SELECT id, updated_ms FROM tickets WHERE id IN ({_marks(len(chunk))})", chunk
            ) as cursor:
                stored.update({row[0]: row[1] for row in await cursor.fetchall()})
        same_time = [r for r in latest.values() if stored.get(r.id) == r.updated_ms]
        identical = await _identical_ids(connection, same_time)
        fresh = [
            r
            for r in latest.values()
            if (r.id not in stored or r.updated_ms >= stored[r.id]) and r.id not in identical
        ]
        if fresh:
            fresh_ids = [r.id for r in fresh]
            # A key can move to another issue id (issues moved between projects): park the
            # stale holder under a unique placeholder until its own sync corrects it.
            await connection.executemany(
                "UPDATE tickets SET key = key || '#' || id WHERE key = ? AND id <> ?",
                [(r.key, r.id) for r in fresh],
            )
            await connection.executemany(_UPSERT_TICKET, [_ticket_row(r, synced_at) for r in fresh])
            for chunk in _chunks(fresh_ids):
                marks = _marks(len(chunk))
                await connection.execute(
                    f"DELETE FROM ticket_links"
                    f" WHERE ticket_id IN ({marks}) OR other_id IN ({marks})",
                    (*chunk, *chunk),
                )
                await connection.execute(
                    f"DELETE FROM ticket_attachments WHERE ticket_id IN ({marks})", chunk
                )
            link_rows = _link_rows(fresh)
            if link_rows:
                await connection.executemany(_INSERT_LINK, link_rows)
            attachment_rows = [_attachment_row(a) for r in fresh for a in r.attachments]
            if attachment_rows:
                await connection.executemany(_INSERT_ATTACHMENT, attachment_rows)
    created = tuple(r.key for r in fresh if r.id not in stored)
    updated = tuple(r.key for r in fresh if r.id in stored and r.updated_ms > stored[r.id])
    return StoreOutcome(created, updated, len(latest) - len(created) - len(updated))


def _attachment_row(a: AttachmentMeta) -> tuple[Any, ...]:
    return (
        a.id,
        a.ticket_id,
        a.filename,
        a.mime_type,
        a.size,
        a.author,
        a.created_at,
        a.content_url,
    )


async def _identical_ids(
    connection: aiosqlite.Connection, records: Sequence[TicketRecord]
) -> set[str]:
    """The records whose ticket row, own link rows and attachments are stored exactly so."""
    if not records:
        return set()
    rows: dict[str, tuple[Any, ...]] = {}
    links: defaultdict[str, set[tuple[Any, ...]]] = defaultdict(set)
    attachments: defaultdict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for chunk in _chunks([r.id for r in records]):
        marks = _marks(len(chunk))
        async with connection.execute(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id IN ({marks})", chunk
        ) as cursor:
            rows.update({row[0]: tuple(row)[:-1] for row in await cursor.fetchall()})
        async with connection.execute(
            f"""
            SELECT ticket_id, link_id, direction, link_type, relation, other_id, other_key,
                   other_summary, other_status
            FROM ticket_links WHERE ticket_id IN ({marks})
            """,
            chunk,
        ) as cursor:
            for row in await cursor.fetchall():
                links[row[0]].add(tuple(row))
        async with connection.execute(
            f"""
            SELECT id, ticket_id, filename, mime_type, size, author, created_at, content_url
            FROM ticket_attachments WHERE ticket_id IN ({marks})
            """,
            chunk,
        ) as cursor:
            for row in await cursor.fetchall():
                attachments[row[1]].add(tuple(row))
    return {
        r.id
        for r in records
        if rows.get(r.id) == _ticket_row(r, "")[:-1]
        and links[r.id] == {row for row in _link_rows([r]) if row[0] == r.id}
        and attachments[r.id] == {_attachment_row(a) for a in r.attachments}
    }


async def delete_tickets(db: Database, ids: Sequence[str]) -> list[str]:
    """Forget tickets (deleted in Jira) with their links from both ends; returns their keys."""
    if not ids:
        return []
    keys: list[str] = []
    async with db.transaction() as connection:
        for chunk in _chunks(list(ids)):
            marks = _marks(len(chunk))
            async with connection.execute(
                f"SELECT key FROM tickets WHERE id IN ({marks}) ORDER BY key", chunk
            ) as cursor:
                keys.extend(row[0] for row in await cursor.fetchall())
            await connection.execute(
                f"DELETE FROM ticket_links WHERE ticket_id IN ({marks}) OR other_id IN ({marks})",
                (*chunk, *chunk),
            )
            await connection.execute(f"DELETE FROM tickets WHERE id IN ({marks})", chunk)
    return keys


def _json_tuple(text: str | None) -> tuple[Any, ...]:
    return tuple(json.loads(text)) if text else ()


def _ticket(row: Any) -> Ticket:
    values = list(row)
    for index in (12, 13, 15, 16, 17):
        values[index] = _json_tuple(values[index])
    return Ticket(*values)


def _summary(row: Any) -> TicketSummary:
    values = list(row)
    values[8] = _json_tuple(values[8])
    return TicketSummary(*values)


async def get_ticket(db: Database, key: str) -> Ticket | None:
    row = await db.fetchone(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE key = ?", (key,))
    return None if row is None else _ticket(row)


async def get_ticket_by_id(db: Database, ticket_id: str) -> Ticket | None:
    row = await db.fetchone(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
    return None if row is None else _ticket(row)


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


def _where(chosen: TicketFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("project", chosen.project),
        ("status", chosen.status),
        ("assignee", chosen.assignee),
        ("issue_type", chosen.issue_type),
        ("priority", chosen.priority),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if chosen.label is not None:
        clauses.append("labels LIKE ? ESCAPE '\\'")
        params.append("%" + _like_escape(json.dumps(chosen.label)) + "%")
    if chosen.updated_since is not None:
        clauses.append("updated_at >= ?")
        params.append(chosen.updated_since)
    if chosen.text:
        pattern = "%" + _like_escape(chosen.text.lower()) + "%"
        clauses.append(
            "(LOWER(key) LIKE ? ESCAPE '\\' OR LOWER(summary) LIKE ? ESCAPE '\\'"
            " OR LOWER(COALESCE(description, '')) LIKE ? ESCAPE '\\')"
        )
        params.extend([pattern, pattern, pattern])
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_tickets(
    db: Database, chosen: TicketFilter, *, limit: int, offset: int
) -> tuple[list[TicketSummary], int]:
    """A page of tickets, newest change first, and how many match in all."""
    where, params = _where(chosen)
    total = await db.fetchval(f"SELECT COUNT(*) FROM tickets {where}", params)
    rows = await db.fetchall(
        f"SELECT {_SUMMARY_COLUMNS} FROM tickets {where}"
        " ORDER BY updated_ms DESC, key LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [_summary(row) for row in rows], int(total or 0)


async def links_of(db: Database, ticket_id: str) -> list[TicketLink]:
    rows = await db.fetchall(
        """
        SELECT link_id, direction, link_type, relation, other_id, other_key,
               other_summary, other_status
        FROM ticket_links WHERE ticket_id = ? ORDER BY link_type, other_key
        """,
        (ticket_id,),
    )
    return [TicketLink(*row) for row in rows]


async def summaries_by_key(db: Database, keys: Sequence[str]) -> dict[str, TicketSummary]:
    found: dict[str, TicketSummary] = {}
    for chunk in _chunks(list(keys)):
        rows = await db.fetchall(
            f"SELECT {_SUMMARY_COLUMNS} FROM tickets WHERE key IN ({_marks(len(chunk))})", chunk
        )
        found.update({row[1]: _summary(row) for row in rows})
    return found


async def children_of(db: Database, key: str) -> list[TicketSummary]:
    rows = await db.fetchall(
        f"SELECT {_SUMMARY_COLUMNS} FROM tickets WHERE parent_key = ? ORDER BY key", (key,)
    )
    return [_summary(row) for row in rows]


_ATTACHMENT_COLUMNS = "id, ticket_id, filename, mime_type, size, author, created_at, content_url"


async def attachments_of(db: Database, ticket_id: str) -> list[AttachmentMeta]:
    rows = await db.fetchall(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM ticket_attachments WHERE ticket_id = ? ORDER BY id",
        (ticket_id,),
    )
    return [AttachmentMeta(*row) for row in rows]


async def attachment_of(db: Database, key: str, attachment_id: str) -> AttachmentMeta | None:
    row = await db.fetchone(
        f"""
        SELECT {", ".join("a." + c.strip() for c in _ATTACHMENT_COLUMNS.split(","))}
        FROM ticket_attachments a JOIN tickets t ON t.id = a.ticket_id
        WHERE t.key = ? AND a.id = ?
        """,
        (key, attachment_id),
    )
    return None if row is None else AttachmentMeta(*row)


async def ids_of_project(db: Database, project: str) -> dict[str, str]:
    """Every mirrored ticket of a project: id -> key."""
    rows = await db.fetchall("SELECT id, key FROM tickets WHERE project = ?", (project,))
    return {row[0]: row[1] for row in rows}


async def count_of_project(db: Database, project: str) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM tickets WHERE project = ?", (project,)))


async def counts(db: Database) -> dict[str, Any]:
    """Totals for /api/tickets/stats: by project, status, type and status category."""

    async def grouped(column: str) -> dict[str, int]:
        rows = await db.fetchall(
            f"SELECT COALESCE({column}, ''), COUNT(*) FROM tickets GROUP BY 1 ORDER BY 2 DESC, 1"
        )
        return {row[0]: row[1] for row in rows}

    return {
        "total": int(await db.fetchval("SELECT COUNT(*) FROM tickets")),
        "by_project": await grouped("project"),
        "by_status": await grouped("status"),
        "by_status_category": await grouped("status_category"),
        "by_type": await grouped("issue_type"),
        "links": int(await db.fetchval("SELECT COUNT(*) FROM ticket_links")),
        "attachments": int(await db.fetchval("SELECT COUNT(*) FROM ticket_attachments")),
    }
