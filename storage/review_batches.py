"""Review batches and their items: which comment versions one engine run answers (issue 5).

A pull request has at most one batch `gathering` comments at a time; the scheduler claims it when
due (gathering -> running, snapshotting each comment's body), the engine works it, the replies
are posted (responding) and it ends done, dropped or skipped. The read-modify-write steps that
decide what is in which batch run inside `db.transaction()`, so two deliveries bringing the same
comment at once still put it in one batch. Times are ISO text (storage/timestamps.py), which sorts
as it compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.database import Database, Transaction, found
from storage.dialect import row_lock
from storage.timestamps import from_text, to_text


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    pr_id: int
    status: str
    trigger: str
    retry_of: int | None
    first_comment_at: str
    last_comment_at: str
    due_at: str
    closed_by_review: int | None
    head_sha: str | None
    check_run_id: int | None
    check_run_sha: str | None
    attempts: int
    outcome: str | None
    note: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    check_run_key: str | None  # the external_id of the batch's last check run, `<batch>.<n>`

    @property
    def check_run_creating(self) -> tuple[str, str] | None:
        """(key, head sha) of a check run recorded as being created whose id is not stored:
        its POST may have reached GitHub, so it is looked for before creating it again."""
        if self.check_run_id is None and self.check_run_sha and self.check_run_key:
            return self.check_run_key, self.check_run_sha
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "trigger": self.trigger,
            "retry_of": self.retry_of,
            "first_comment_at": self.first_comment_at,
            "last_comment_at": self.last_comment_at,
            "due_at": self.due_at,
            "closed_by_review": self.closed_by_review,
            "head_sha": self.head_sha,
            "check_run_id": self.check_run_id,
            "outcome": self.outcome,
            "note": self.note,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


_BATCH_COLUMNS = (
    "id, pr_id, status, trigger, retry_of, first_comment_at, last_comment_at, due_at,"
    " closed_by_review, head_sha, check_run_id, check_run_sha, attempts, outcome, note,"
    " created_at, started_at, finished_at, check_run_key"
)


_SELECT_GATHERING = (
    f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE pr_id = ? AND status = 'gathering'"
)


def _batch(row: Any) -> Batch:
    return Batch(*row)


@dataclass(frozen=True, slots=True)
class BatchItem:
    batch_id: int
    comment_kind: str
    comment_id: int
    comment_version: int
    body: str | None  # the snapshot, once the batch is picked up
    outcome: str | None
    detail: str | None
    commit_sha: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "comment_kind": self.comment_kind,
            "comment_id": self.comment_id,
            "comment_version": self.comment_version,
            "body": self.body,
            "outcome": self.outcome,
            "detail": self.detail,
            "commit_sha": self.commit_sha,
        }


async def gather(
    db: Database,
    pr_id: int,
    items: list[tuple[str, int]],
    *,
    now: datetime,
    debounce_s: float,
    max_wait_s: float,
    trigger: str = "comments",
    again: bool = False,
) -> tuple[Batch | None, int]:
    """Put comments (kind, id) into the pull request's gathering batch; returns it and how many
    were added. A comment version already in some batch is not added again, unless `again` (a
    reopened thread: its last comment is worked once more). The batch is due `debounce_s` after
    its last comment, and never later than `max_wait_s` after its first.
    """
    stamp = to_text(now)
    added = 0
    version_of = _current_version if again else _unbatched_version
    async with db.transaction() as connection:
        # Instances gathering for one PR at once take turns on its row: otherwise each reads
        # "no gathering batch" and opens its own (tests/test_scale_out.py saw two).
        await connection.fetchone(
            f"SELECT id FROM pull_requests WHERE id = ?{row_lock(db.dialect)}", (pr_id,)
        )
        pending = await _gathering_batch_in(connection, pr_id)
        for kind, comment_id in items:
            version = await version_of(connection, kind, comment_id)
            if version is None:
                continue
            if pending is None:
                pending = await _open_gathering_batch(
                    connection, pr_id, trigger=trigger, stamp=stamp
                )
            await _put_item(connection, pending.id, kind, comment_id, version, stamp)
            added += 1
        if pending is None:
            return None, 0
        if added:
            cap = _plus(pending.first_comment_at, max_wait_s)
            quiet_end = to_text(now + timedelta(seconds=debounce_s))
            due = min(quiet_end, cap)
            if pending.closed_by_review is not None:  # closed by a review: stays due now
                due = min(due, pending.due_at)
            await connection.execute(
                "UPDATE review_batches SET last_comment_at = ?, due_at = ? WHERE id = ?",
                (stamp, due, pending.id),
            )
    return await get_batch(db, pending.id), added


async def _unbatched_version(connection: Transaction, kind: str, comment_id: int) -> int | None:
    """The comment's current version, unless it is deleted or that version is in a batch."""
    row = await connection.fetchone(
        """
        SELECT c.version FROM review_comments c
        WHERE c.kind = ? AND c.id = ? AND c.deleted = 0 AND NOT EXISTS (
            SELECT 1 FROM review_batch_items i
            WHERE i.comment_kind = c.kind AND i.comment_id = c.id
              AND i.comment_version = c.version)
        """,
        (kind, comment_id),
    )
    return None if row is None else int(row[0])


async def worked_before(
    db: Database, kind: str, comment_id: int, version: int, *, besides_batch: int
) -> bool:
    """Whether this version of the comment is in a batch other than `besides_batch`."""
    found_row = await db.fetchval(
        "SELECT 1 FROM review_batch_items WHERE comment_kind = ? AND comment_id = ?"
        " AND comment_version = ? AND batch_id <> ?",
        (kind, comment_id, version, besides_batch),
    )
    return found_row is not None


async def leave_gathering_batch(db: Database, batch_id: int, kind: str, comment_id: int) -> None:
    """Take a comment out of a batch that is still gathering."""
    await db.write(
        "DELETE FROM review_batch_items WHERE batch_id = ? AND comment_kind = ? AND comment_id = ?"
        " AND batch_id IN (SELECT id FROM review_batches WHERE status = 'gathering')",
        (batch_id, kind, comment_id),
    )


async def _current_version(connection: Transaction, kind: str, comment_id: int) -> int | None:
    """The comment's current version, unless it is deleted (batched before or not)."""
    row = await connection.fetchone(
        "SELECT version FROM review_comments WHERE kind = ? AND id = ? AND deleted = 0",
        (kind, comment_id),
    )
    return None if row is None else int(row[0])


async def _put_item(
    connection: Transaction,
    batch_id: int,
    kind: str,
    comment_id: int,
    version: int,
    stamp: str,
) -> None:
    """Add a comment version to a batch; a newer version replaces an older one still there."""
    await connection.execute(
        "DELETE FROM review_batch_items WHERE batch_id = ? AND comment_kind = ? AND comment_id = ?",
        (batch_id, kind, comment_id),
    )
    await connection.execute(
        "INSERT INTO review_batch_items"
        " (batch_id, comment_kind, comment_id, comment_version, added_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (batch_id, kind, comment_id, version, stamp),
    )


def _plus(stamp: str, seconds: float) -> str:
    return to_text(from_text(stamp) + timedelta(seconds=seconds))


async def _gathering_batch_in(connection: Transaction, pr_id: int) -> Batch | None:
    """The gathering batch, read inside a transaction (`gathering_batch` reads outside one)."""
    row = await connection.fetchone(_SELECT_GATHERING, (pr_id,))
    return None if row is None else _batch(row)


async def _open_gathering_batch(
    connection: Transaction,
    pr_id: int,
    *,
    trigger: str,
    stamp: str,
    retry_of: int | None = None,
) -> Batch:
    """A new gathering batch, due at once until its comments set a debounce."""
    await connection.execute(
        """
        INSERT INTO review_batches
            (pr_id, status, trigger, retry_of, first_comment_at, last_comment_at, due_at,
             created_at)
        VALUES (?, 'gathering', ?, ?, ?, ?, ?, ?)
        """,
        (pr_id, trigger, retry_of, stamp, stamp, stamp, stamp),
    )
    opened = found(await _gathering_batch_in(connection, pr_id), f"gathering batch of PR {pr_id}")
    return opened


async def close_gathering_batch(
    db: Database, pr_id: int, *, now: datetime, review_id: int | None
) -> Batch | None:
    """Make the gathering batch due now (a submitted review, `/biagent address`)."""
    await db.write(
        "UPDATE review_batches SET due_at = ?, closed_by_review = COALESCE(?, closed_by_review)"
        " WHERE pr_id = ? AND status = 'gathering' AND due_at > ?",
        (to_text(now), review_id, pr_id, to_text(now)),
    )
    if review_id is not None:
        await db.write(
            "UPDATE review_batches SET closed_by_review = COALESCE(closed_by_review, ?)"
            " WHERE pr_id = ? AND status = 'gathering'",
            (review_id, pr_id),
        )
    return await gathering_batch(db, pr_id)


async def gathering_batch(db: Database, pr_id: int) -> Batch | None:
    row = await db.fetchone(_SELECT_GATHERING, (pr_id,))
    return None if row is None else _batch(row)


async def get_batch(db: Database, batch_id: int) -> Batch | None:
    row = await db.fetchone(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE id = ?", (batch_id,)
    )
    return None if row is None else _batch(row)


async def list_batches(db: Database, pr_id: int) -> list[Batch]:
    rows = await db.fetchall(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE pr_id = ? ORDER BY id", (pr_id,)
    )
    return [_batch(row) for row in rows]


async def latest_batch(db: Database, pr_id: int) -> Batch | None:
    row = await db.fetchone(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE pr_id = ? AND status <> 'gathering'"
        " ORDER BY id DESC LIMIT 1",
        (pr_id,),
    )
    return None if row is None else _batch(row)


async def batch_items(db: Database, batch_id: int) -> list[BatchItem]:
    rows = await db.fetchall(
        """
        SELECT i.batch_id, i.comment_kind, i.comment_id, i.comment_version, i.body, i.outcome,
               i.detail, i.commit_sha
        FROM review_batch_items i JOIN review_comments c
             ON c.kind = i.comment_kind AND c.id = i.comment_id
        WHERE i.batch_id = ?
        ORDER BY c.created_at, c.id
        """,
        (batch_id,),
    )
    return [BatchItem(*row) for row in rows]


async def due_batches(db: Database, now: datetime, *, limit: int = 16) -> list[Batch]:
    """Gathering batches that are due, on open unpaused pull requests with nothing running."""
    rows = await db.fetchall(
        f"""
        SELECT {", ".join("b." + c.strip() for c in _BATCH_COLUMNS.split(","))}
        FROM review_batches b JOIN pull_requests p ON p.id = b.pr_id
        WHERE b.status = 'gathering' AND b.due_at <= ? AND p.paused = 0
          AND NOT EXISTS (SELECT 1 FROM review_batches r
                          WHERE r.pr_id = b.pr_id AND r.status IN ('running', 'responding'))
        ORDER BY b.due_at, b.id
        LIMIT ?
        """,
        (to_text(now), limit),
    )
    return [_batch(row) for row in rows]


async def next_due_at(db: Database) -> str | None:
    return await db.fetchval(
        """
        SELECT MIN(b.due_at) FROM review_batches b JOIN pull_requests p ON p.id = b.pr_id
        WHERE b.status = 'gathering' AND p.paused = 0
        """
    )


async def unfinished_batches(db: Database) -> list[Batch]:
    """Batches a stop left in the middle of their work (running or responding)."""
    rows = await db.fetchall(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches"
        " WHERE status IN ('running', 'responding') ORDER BY id"
    )
    return [_batch(row) for row in rows]


async def claim(db: Database, batch_id: int, *, head_sha: str, now: datetime) -> Batch | None:
    """gathering -> running, snapshotting every comment's body; None if it was not gathering."""
    async with db.transaction() as connection:
        claimed = await connection.execute(
            "UPDATE review_batches SET status = 'running', head_sha = ?, started_at = ?"
            " WHERE id = ? AND status = 'gathering'",
            (head_sha, to_text(now), batch_id),
        )
        if claimed.rowcount != 1:
            return None
        await connection.execute(
            """
            UPDATE review_batch_items SET body = (
                SELECT c.body FROM review_comments c
                WHERE c.kind = review_batch_items.comment_kind
                  AND c.id = review_batch_items.comment_id)
            WHERE batch_id = ?
            """,
            (batch_id,),
        )
    return await get_batch(db, batch_id)


async def set_batch_status(
    db: Database,
    batch_id: int,
    status: str,
    *,
    now: datetime,
    outcome: str | None = None,
    note: str | None = None,
) -> None:
    finished = to_text(now) if status in ("done", "dropped", "skipped", "failed") else None
    await db.write(
        "UPDATE review_batches SET status = ?, outcome = COALESCE(?, outcome),"
        " note = COALESCE(?, note), finished_at = COALESCE(?, finished_at) WHERE id = ?",
        (status, outcome, note, finished, batch_id),
    )


async def park(db: Database, batch_id: int, *, note: str) -> None:
    """A gathering batch of a paused pull request: kept, worked again after `resume`."""
    await db.write(
        "UPDATE review_batches SET note = ? WHERE id = ? AND status = 'gathering'",
        (note, batch_id),
    )


async def set_due(db: Database, batch_id: int, due_at: datetime) -> None:
    await db.write("UPDATE review_batches SET due_at = ? WHERE id = ?", (to_text(due_at), batch_id))


async def begin_check_run(db: Database, batch_id: int, head_sha: str) -> str:
    """Record, before the POST, that the batch's next check run is being created on `head_sha`;
    returns its key (the external_id), `<batch>.<n>`, new for every check run of the batch."""
    async with db.transaction() as connection:
        row = await connection.fetchone(
            "SELECT check_run_key FROM review_batches WHERE id = ?", (batch_id,)
        )
        last = row[0] if row is not None else None
        serial = int(last.rsplit(".", 1)[1]) + 1 if last else 1
        key = f"{batch_id}.{serial}"
        await connection.execute(
            "UPDATE review_batches SET check_run_id = NULL, check_run_sha = ?, check_run_key = ?"
            " WHERE id = ?",
            (head_sha, key, batch_id),
        )
    return key


async def set_check_run(
    db: Database, batch_id: int, check_run_id: int | None, head_sha: str | None
) -> None:
    """The batch's current check run (its key stays, for the next one's serial); (None, None)
    when it has none."""
    await db.write(
        "UPDATE review_batches SET check_run_id = ?, check_run_sha = ? WHERE id = ?",
        (check_run_id, head_sha, batch_id),
    )


async def drop_gathering(db: Database, pr_id: int, *, note: str, now: datetime) -> Batch | None:
    """Drop the pending batch (approval, `/biagent ignore`); returns it, or None."""
    pending = await gathering_batch(db, pr_id)
    if pending is None:
        return None
    await set_batch_status(db, pending.id, "dropped", now=now, outcome="dropped", note=note)
    return await get_batch(db, pending.id)


async def copy_for_retry(db: Database, batch_id: int, *, now: datetime) -> Batch | None:
    """A new batch, due now, with the comments of `batch_id` (a retry or a Re-run)."""
    old = await get_batch(db, batch_id)
    if old is None:
        return None
    stamp = to_text(now)
    async with db.transaction() as connection:
        pending = await _gathering_batch_in(connection, old.pr_id)
        if pending is None:
            pending = await _open_gathering_batch(
                connection, old.pr_id, trigger="retry", stamp=stamp, retry_of=batch_id
            )
        else:
            await connection.execute(
                "UPDATE review_batches SET due_at = ?, retry_of = ? WHERE id = ?",
                (stamp, batch_id, pending.id),
            )
        await connection.execute(
            """
            INSERT INTO review_batch_items
                (batch_id, comment_kind, comment_id, comment_version, added_at)
            SELECT ?, i.comment_kind, i.comment_id, c.version, ?
            FROM review_batch_items i JOIN review_comments c
                 ON c.kind = i.comment_kind AND c.id = i.comment_id
            WHERE i.batch_id = ? AND c.deleted = 0
            ON CONFLICT (batch_id, comment_kind, comment_id) DO NOTHING
            """,
            (pending.id, stamp, batch_id),
        )
    return await get_batch(db, pending.id)


async def batch_for_check_run(db: Database, check_run_id: int) -> Batch | None:
    row = await db.fetchone(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE check_run_id = ?", (check_run_id,)
    )
    return None if row is None else _batch(row)
