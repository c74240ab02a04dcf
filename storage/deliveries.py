"""The delivery log: every accepted webhook, its processing state and per-concern results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import claims
from storage.claims import Lease
from storage.database import Database, Params
from storage.timestamps import to_text

# `rejected`: the payload can never be worked (bot/dispatcher.py), so it is finished unretried.
STATUSES = ("pending", "processing", "done", "failed", "dead", "rejected")


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    source: str
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    status: str
    attempts: int
    last_error: str | None
    received_at: str
    next_attempt_at: str
    finished_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "received_at": self.received_at,
            "next_attempt_at": self.next_attempt_at,
            "finished_at": self.finished_at,
        }


_COLUMNS = (
    "id, source, delivery_id, event, action, installation_id, status, attempts, last_error,"
    " received_at, next_attempt_at, finished_at"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(*row)


async def accept(
    db: Database,
    *,
    source: str,
    delivery_id: str,
    event: str,
    action: str | None,
    installation_id: int | None,
    payload: str,
    now: datetime,
) -> bool:
    """Store a delivery (committed on return). False when it was already there: a redelivery."""
    stamp = to_text(now)
    result = await db.write(
        """
        INSERT INTO deliveries
            (source, delivery_id, event, action, installation_id, payload,
             received_at, next_attempt_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source, delivery_id) DO NOTHING
        """,
        (source, delivery_id, event, action, installation_id, payload, stamp, stamp),
    )
    return result.rowcount == 1


async def requeue_interrupted(db: Database, *, instance: str | None = None) -> int:
    """At start-up: deliveries a stop left in `processing` go back to `pending`: all of them
    (one process on the database), or with `instance` only those that instance claimed (its
    own from before a restart; another instance's are taken over when their lease runs out)."""
    if instance is None:
        result = await db.write(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL"
            " WHERE status = 'processing'"
        )
    else:
        result = await db.write(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL"
            " WHERE status = 'processing' AND claimed_by = ?",
            (instance,),
        )
    return result.rowcount


# Due: pending, failed and due for its retry, or processing under a lease that ran out (the
# instance working it stopped; its attempt counts).
_DUE = (
    "(status IN ('pending', 'failed') AND next_attempt_at <= ?)"
    f" OR (status = 'processing' AND {claims.lease_free()})"
)


async def claim_due(db: Database, *, lease: Lease, limit: int) -> list[Delivery]:
    """Claim up to `limit` due deliveries for `lease.instance`, oldest first: `processing`
    under its lease, returned as claimed.

    A claimed delivery's `attempts` counts the attempt it was claimed for. One statement
    through the group commit: a read-then-update transaction would hold the writer across
    several turns of the event loop, with every webhook ack queued behind it
    (bench/webhooks.py measured 1 ms per claim under load, up to 24 ms). On PostgreSQL the
    rows are locked with SKIP LOCKED: instances claiming at once take different deliveries.
    """
    sql, params = claims.claim_many_statement(
        db,
        "deliveries",
        lease,
        where=_DUE,
        params=(lease.now_text, lease.now_text),
        order="next_attempt_at, id",
        limit=limit,
        also_set="status = 'processing', attempts = attempts + 1",
        returning=_COLUMNS,
    )
    result = await db.write(sql, params)
    claimed = [_delivery(row) for row in result.rows]
    return sorted(claimed, key=lambda delivery: (delivery.next_attempt_at, delivery.id))


async def next_due_at(db: Database) -> str | None:
    """When the next delivery falls due: a retry's time, or when a lease held by another
    instance runs out (this one's own never does while it runs)."""
    return await db.fetchval(
        """
        SELECT MIN(due) FROM (
            SELECT MIN(next_attempt_at) AS due FROM deliveries
            WHERE status IN ('pending', 'failed')
            UNION ALL
            SELECT MIN(lease_until) AS due FROM deliveries WHERE status = 'processing'
        ) AS due_times
        """
    )


async def load_payload(db: Database, delivery_pk: int) -> str:
    payload = await db.fetchval("SELECT payload FROM deliveries WHERE id = ?", (delivery_pk,))
    if payload is None:
        raise KeyError(delivery_pk)
    return str(payload)


async def done_concerns(db: Database, delivery_pk: int) -> set[str]:
    rows = await db.fetchall(
        "SELECT concern FROM delivery_results WHERE delivery_pk = ? AND status = 'done'",
        (delivery_pk,),
    )
    return {row[0] for row in rows}


async def rejected_concerns(db: Database, delivery_pk: int) -> dict[str, str]:
    """The concerns that rejected the delivery's payload on an earlier attempt, with why."""
    rows = await db.fetchall(
        "SELECT concern, error FROM delivery_results WHERE delivery_pk = ? AND status = 'rejected'",
        (delivery_pk,),
    )
    return {row[0]: row[1] or "" for row in rows}


def record_concern_statement(
    delivery_pk: int, concern: str, *, error: str | None, now: datetime, rejected: bool = False
) -> tuple[str, Params]:
    """The statement that records one concern's result for a delivery: done, failed (retried)
    or, with `rejected`, failed for good (not run again on a retry)."""
    status = "rejected" if rejected else "failed" if error else "done"
    return (
        """
        INSERT INTO delivery_results (delivery_pk, concern, status, error, updated_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (delivery_pk, concern) DO UPDATE
            SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at
        """,
        (delivery_pk, concern, status, error, to_text(now)),
    )


def mark_done_statement(delivery_pk: int, *, now: datetime) -> tuple[str, Params]:
    """The statement that marks a delivery done (committed with its announcing event)."""
    return (
        "UPDATE deliveries SET status = 'done', last_error = NULL, finished_at = ?,"
        " lease_until = NULL WHERE id = ?",
        (to_text(now), delivery_pk),
    )


def mark_failed_statement(
    delivery_pk: int, *, error: str, retry_at: datetime | None, now: datetime
) -> tuple[str, Params]:
    """Failed with a retry at `retry_at`, or `dead` (given up) when it is None."""
    if retry_at is None:
        return (
            "UPDATE deliveries SET status = 'dead', last_error = ?, finished_at = ?,"
            " lease_until = NULL WHERE id = ?",
            (error, to_text(now), delivery_pk),
        )
    return (
        "UPDATE deliveries SET status = 'failed', last_error = ?, next_attempt_at = ?,"
        " lease_until = NULL WHERE id = ?",
        (error, to_text(retry_at), delivery_pk),
    )


def mark_rejected_statement(delivery_pk: int, *, error: str, now: datetime) -> tuple[str, Params]:
    """`rejected`: finished without a retry, its payload being one no handler can work."""
    return (
        "UPDATE deliveries SET status = 'rejected', last_error = ?, finished_at = ?,"
        " lease_until = NULL WHERE id = ?",
        (error, to_text(now), delivery_pk),
    )


async def redeliver(db: Database, delivery_pk: int, *, now: datetime) -> bool:
    """Queue a stored delivery to be worked again from scratch (all concerns)."""
    result = await db.write_many(
        [
            # Only when the update below happens: a delivery being worked keeps its results.
            (
                "DELETE FROM delivery_results WHERE delivery_pk = ? AND EXISTS ("
                "SELECT 1 FROM deliveries WHERE id = ? AND status <> 'processing')",
                (delivery_pk, delivery_pk),
            ),
            (
                "UPDATE deliveries SET status = 'pending', attempts = 0, last_error = NULL,"
                " next_attempt_at = ?, finished_at = NULL WHERE id = ? AND status <> 'processing'",
                (to_text(now), delivery_pk),
            ),
        ]
    )
    return result[1].rowcount == 1


async def get(db: Database, delivery_pk: int) -> Delivery | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (delivery_pk,))
    return None if row is None else _delivery(row)


async def list_recent(
    db: Database,
    *,
    status: str | None = None,
    source: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """The newest deliveries first; with `before`, those older than that id (a page's cursor:
    ids only grow, so a page read later still holds the same deliveries)."""
    clauses: list[str] = []
    params: list[Any] = []
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM deliveries {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [_delivery(row) for row in rows]


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
    return {row[0]: row[1] for row in rows}
