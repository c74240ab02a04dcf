"""Writing the JIRA mirror: a batch of tickets stored in one transaction, or forgotten.

The sync service and the webhook concern write here through `store_tickets` (a batch, one
transaction) and `delete_tickets`. A write never replaces a ticket with an older version of
itself (`updated_ms` only goes forward), so a slow fetch racing a webhook cannot undo a newer
change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.database import Database, Transaction
from storage.ticket_records import StoreOutcome, TicketRecord
from storage.ticket_rows import (
    TICKET_COLUMNS,
    attachment_row,
    chunks,
    link_rows,
    marks,
    ticket_row,
)
from storage.timestamps import to_text

_UPSERT_TICKET = f"""
    INSERT INTO tickets ({TICKET_COLUMNS})
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
    latest = _latest_per_id(records)
    async with db.transaction() as connection:
        stored = await _stored_updated_ms(connection, list(latest))
        same_time = [r for r in latest.values() if stored.get(r.id) == r.updated_ms]
        identical = await _identical_ids(connection, same_time)
        fresh = [
            r
            for r in latest.values()
            if (r.id not in stored or r.updated_ms >= stored[r.id]) and r.id not in identical
        ]
        if fresh:
            await _write(connection, fresh, synced_at=to_text(now))
    created = tuple(r.key for r in fresh if r.id not in stored)
    updated = tuple(r.key for r in fresh if r.id in stored and r.updated_ms > stored[r.id])
    return StoreOutcome(created, updated, len(latest) - len(created) - len(updated))


def _latest_per_id(records: Sequence[TicketRecord]) -> dict[str, TicketRecord]:
    """One record per ticket id: the newest (the later one of equals) in the batch."""
    latest: dict[str, TicketRecord] = {}
    for record in records:
        kept = latest.get(record.id)
        if kept is None or record.updated_ms >= kept.updated_ms:
            latest[record.id] = record
    return latest


async def _stored_updated_ms(connection: Transaction, ids: list[str]) -> dict[str, int]:
    stored: dict[str, int] = {}
    for chunk in chunks(ids):
        fetched = await connection.fetchall(
            f"SELECT id, updated_ms FROM tickets WHERE id IN ({marks(len(chunk))})", chunk
        )
        stored.update({row[0]: row[1] for row in fetched})
    return stored


async def _write(connection: Transaction, fresh: list[TicketRecord], *, synced_at: str) -> None:
    """Upsert the tickets and replace their links (from both ends) and attachments."""
    # A key can move to another issue id (issues moved between projects): park the stale
    # holder under a unique placeholder until its own sync corrects it.
    await connection.executemany(
        "UPDATE tickets SET key = key || '#' || id WHERE key = ? AND id <> ?",
        [(r.key, r.id) for r in fresh],
    )
    await connection.executemany(_UPSERT_TICKET, [ticket_row(r, synced_at) for r in fresh])
    for chunk in chunks([r.id for r in fresh]):
        await _forget_links(connection, chunk)
        await connection.execute(
            f"DELETE FROM ticket_attachments WHERE ticket_id IN ({marks(len(chunk))})", chunk
        )
    links = link_rows(fresh)
    if links:
        await connection.executemany(_INSERT_LINK, links)
    attachments = [attachment_row(a) for r in fresh for a in r.attachments]
    if attachments:
        await connection.executemany(_INSERT_ATTACHMENT, attachments)


async def _identical_ids(connection: Transaction, records: Sequence[TicketRecord]) -> set[str]:
    """The records whose ticket row, own link rows and attachments are stored exactly so."""
    if not records:
        return set()
    rows: dict[str, tuple[Any, ...]] = {}
    links: defaultdict[str, set[tuple[Any, ...]]] = defaultdict(set)
    attachments: defaultdict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for chunk in chunks([r.id for r in records]):
        placeholders = marks(len(chunk))
        fetched = await connection.fetchall(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id IN ({placeholders})", chunk
        )
        rows.update({row[0]: tuple(row)[:-1] for row in fetched})
        fetched = await connection.fetchall(
            f"""
            SELECT ticket_id, link_id, direction, link_type, relation, other_id, other_key,
                   other_summary, other_status
            FROM ticket_links WHERE ticket_id IN ({placeholders})
            """,
            chunk,
        )
        for row in fetched:
            links[row[0]].add(tuple(row))
        fetched = await connection.fetchall(
            f"""
            SELECT id, ticket_id, filename, mime_type, size, author, created_at, content_url
            FROM ticket_attachments WHERE ticket_id IN ({placeholders})
            """,
            chunk,
        )
        for row in fetched:
            attachments[row[1]].add(tuple(row))
    return {
        r.id
        for r in records
        if rows.get(r.id) == ticket_row(r, "")[:-1]
        and links[r.id] == {row for row in link_rows([r]) if row[0] == r.id}
        and attachments[r.id] == {attachment_row(a) for a in r.attachments}
    }


async def delete_tickets(db: Database, ids: Sequence[str]) -> list[str]:
    """Forget tickets (deleted in Jira) with their links from both ends; returns their keys."""
    if not ids:
        return []
    keys: list[str] = []
    async with db.transaction() as connection:
        for chunk in chunks(list(ids)):
            placeholders = marks(len(chunk))
            fetched = await connection.fetchall(
                f"SELECT key FROM tickets WHERE id IN ({placeholders}) ORDER BY key", chunk
            )
            keys.extend(row[0] for row in fetched)
            await _forget_links(connection, chunk)
            await connection.execute(f"DELETE FROM tickets WHERE id IN ({placeholders})", chunk)
    return keys


async def _forget_links(connection: Transaction, ids: Sequence[str]) -> None:
    """Every link from or to these tickets: a link is stored from both of its ends."""
    placeholders = marks(len(ids))
    await connection.execute(
        f"DELETE FROM ticket_links"
        f" WHERE ticket_id IN ({placeholders}) OR other_id IN ({placeholders})",
        (*ids, *ids),
    )
