"""How the JIRA mirror's records map to rows of tickets, ticket_links and ticket_attachments.

Shared by storage/ticket_writes.py (records to rows) and storage/tickets.py (rows to records):
the column lists, the row tuples, and the chunking that keeps `IN (...)` lists short.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from storage.ticket_records import AttachmentMeta, Ticket, TicketRecord, TicketSummary

TICKET_COLUMNS = (
    "id, key, project, summary, description, status, status_category, issue_type, priority,"
    " assignee, reporter, resolution, labels, components, parent_key, subtask_keys, comments,"
    " changelog, created_at, updated_at, updated_ms, synced_at"
)
SUMMARY_COLUMNS = (
    "id, key, project, summary, status, issue_type, priority, assignee, labels, updated_at"
)

ATTACHMENT_COLUMNS = "id, ticket_id, filename, mime_type, size, author, created_at, content_url"
# SQLite's default limit on bound parameters is 999 in old builds; stay well under it.
CHUNK = 400


def chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def ticket_row(record: TicketRecord, synced_at: str) -> tuple[Any, ...]:
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


def link_rows(records: Sequence[TicketRecord]) -> list[tuple[Any, ...]]:
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


def attachment_row(a: AttachmentMeta) -> tuple[Any, ...]:
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


def json_tuple(text: str | None) -> tuple[Any, ...]:
    return tuple(json.loads(text)) if text else ()


def ticket_of(row: Any) -> Ticket:
    values = list(row)
    for index in (12, 13, 15, 16, 17):
        values[index] = json_tuple(values[index])
    return Ticket(*values)


def summary_of(row: Any) -> TicketSummary:
    values = list(row)
    values[8] = json_tuple(values[8])
    return TicketSummary(*values)
