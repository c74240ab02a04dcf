"""Where a pull request's diff comments stand across its review batches (issue 14): answered
and idle, or waiting in a batch still in progress.

Read-only questions over `review_batch_items` and `review_batches` (storage/review_batches.py
owns their writes), asked after a push (which threads may be resolved: bot/reviews/after_push.py)
and when a thread is reopened (which comment may be worked again: bot/reviews/on_review.py).
Portable SQL: `?` placeholders, standard CASE and IN.
"""

from __future__ import annotations

from storage.database import Database

IN_PROGRESS = "('gathering', 'running', 'responding')"


async def answered_and_idle(db: Database, kind: str, comment_id: int) -> bool:
    """Whether the comment's current version was answered (an outcome in a done batch) and is
    in no batch still in progress (gathering, running, responding): one that may be worked
    again, as a reopened thread asks."""
    row = await db.fetchone(
        f"""
        SELECT
          SUM(CASE WHEN b.status = 'done' AND i.outcome IS NOT NULL THEN 1 ELSE 0 END),
          SUM(CASE WHEN b.status IN {IN_PROGRESS} THEN 1 ELSE 0 END)
        FROM review_comments c
        JOIN review_batch_items i
          ON i.comment_kind = c.kind AND i.comment_id = c.id AND i.comment_version = c.version
        JOIN review_batches b ON b.id = i.batch_id
        WHERE c.kind = ? AND c.id = ? AND c.deleted = 0
        """,
        (kind, comment_id),
    )
    return row is not None and bool(row[0]) and not row[1]


async def waiting_elsewhere(db: Database, pr_id: int, *, besides_batch: int) -> set[int]:
    """The diff comment ids of the pull request in a batch still in progress (gathering,
    running, responding) other than `besides_batch`: comments not answered yet."""
    rows = await db.fetchall(
        "SELECT i.comment_id FROM review_batch_items i"
        " JOIN review_batches b ON b.id = i.batch_id"
        " WHERE b.pr_id = ? AND b.id <> ? AND i.comment_kind = 'review_comment'"
        f" AND b.status IN {IN_PROGRESS}",
        (pr_id, besides_batch),
    )
    return {int(row[0]) for row in rows}
