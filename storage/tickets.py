"""The JIRA mirror, read side: tickets, their links (stored from both ends), attachments.

The API and the CLI read here; the sync service and the webhook concern write through
`store_tickets` and `delete_tickets` (storage/ticket_writes.py), and the records live in
storage/ticket_records.py. Both are re-exported, so `storage.tickets` stays the one name to
import the mirror by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storage.database import Database
from storage.ticket_records import (
    AttachmentMeta,
    LinkEnd,
    StoreOutcome,
    Ticket,
    TicketFilter,
    TicketLink,
    TicketRecord,
    TicketSummary,
)
from storage.ticket_rows import (
    ATTACHMENT_COLUMNS,
    SUMMARY_COLUMNS,
    TICKET_COLUMNS,
    chunks,
    marks,
    summary_of,
    ticket_of,
)
from storage.ticket_writes import delete_tickets, store_tickets

__all__ = [
    "AttachmentMeta",
    "LinkEnd",
    "StoreOutcome",
    "Ticket",
    "TicketFilter",
    "TicketLink",
    "TicketRecord",
    "TicketSummary",
    "attachment_of",
    "attachments_of",
    "children_of",
    "count_of_project",
    "counts",
    "delete_tickets",
    "get_ticket",
    "get_ticket_by_id",
    "ids_of_project",
    "links_of",
    "list_tickets",
    "store_tickets",
    "summaries_by_key",
]


async def get_ticket(db: Database, key: str) -> Ticket | None:
    row = await db.fetchone(f"SELECT {TICKET_COLUMNS} FROM tickets WHERE key = ?", (key,))
    return None if row is None else ticket_of(row)


async def get_ticket_by_id(db: Database, ticket_id: str) -> Ticket | None:
    row = await db.fetchone(f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
    return None if row is None else ticket_of(row)


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
        f"SELECT {SUMMARY_COLUMNS} FROM tickets {where}"
        " ORDER BY updated_ms DESC, key LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [summary_of(row) for row in rows], int(total or 0)


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
    for chunk in chunks(list(keys)):
        rows = await db.fetchall(
            f"SELECT {SUMMARY_COLUMNS} FROM tickets WHERE key IN ({marks(len(chunk))})", chunk
        )
        found.update({row[1]: summary_of(row) for row in rows})
    return found


async def children_of(db: Database, key: str) -> list[TicketSummary]:
    rows = await db.fetchall(
        f"SELECT {SUMMARY_COLUMNS} FROM tickets WHERE parent_key = ? ORDER BY key", (key,)
    )
    return [summary_of(row) for row in rows]


async def attachments_of(db: Database, ticket_id: str) -> list[AttachmentMeta]:
    rows = await db.fetchall(
        f"SELECT {ATTACHMENT_COLUMNS} FROM ticket_attachments WHERE ticket_id = ? ORDER BY id",
        (ticket_id,),
    )
    return [AttachmentMeta(*row) for row in rows]


async def attachment_of(db: Database, key: str, attachment_id: str) -> AttachmentMeta | None:
    row = await db.fetchone(
        f"""
        SELECT {", ".join("a." + c.strip() for c in ATTACHMENT_COLUMNS.split(","))}
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
