"""Replies biagent posts on pull requests, each under an idempotency key (issue 5).

A reply is recorded as an intent, committed, before the POST to GitHub, then marked posted (or
gone when its target was deleted, or failed when GitHub refused it for good): a retry, a
redelivery or a restart finds the key and never writes a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    pr_id: int
    idempotency_key: str
    kind: str
    batch_id: int | None
    iteration_id: int | None
    comment_kind: str | None
    comment_id: int | None
    root_id: int | None
    outcome: str | None
    body: str
    github_id: int | None
    status: str
    created_at: str
    posted_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "batch_id": self.batch_id,
            "iteration_id": self.iteration_id,
            "comment_id": self.comment_id,
            "root_id": self.root_id,
            "outcome": self.outcome,
            "body": self.body,
            "github_id": self.github_id,
            "status": self.status,
            "created_at": self.created_at,
            "posted_at": self.posted_at,
        }


_REPLY_COLUMNS = (
    "id, pr_id, idempotency_key, kind, batch_id, iteration_id, comment_kind, comment_id,"
    " root_id, outcome, body, github_id, status, created_at, posted_at"
)


async def record_intent(
    db: Database,
    *,
    pr_id: int,
    key: str,
    kind: str,
    body: str,
    now: datetime,
    batch_id: int | None = None,
    iteration_id: int | None = None,
    comment_kind: str | None = None,
    comment_id: int | None = None,
    root_id: int | None = None,
    outcome: str | None = None,
) -> tuple[Reply, bool]:
    """Record that biagent is about to write something; returns it and whether it is new.

    Committed before the POST: a retry, a redelivery or a restart finds the row and never
    writes a second time.
    """
    result = await db.write(
        """
        INSERT INTO review_replies
            (pr_id, idempotency_key, kind, batch_id, iteration_id, comment_kind, comment_id,
             root_id, outcome, body, github_id, status, created_at, posted_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'intent', ?, NULL)
        ON CONFLICT DO NOTHING
        """,
        (
            pr_id,
            key,
            kind,
            batch_id,
            iteration_id,
            comment_kind,
            comment_id,
            root_id,
            outcome,
            body,
            to_text(now),
        ),
    )
    row = await db.fetchone(
        f"SELECT {_REPLY_COLUMNS} FROM review_replies WHERE idempotency_key = ?", (key,)
    )
    if row is None and kind == "thread":
        row = await db.fetchone(
            f"SELECT {_REPLY_COLUMNS} FROM review_replies WHERE kind = 'thread'"
            " AND iteration_id = ? AND comment_kind = ? AND comment_id = ?",
            (iteration_id, comment_kind, comment_id),
        )
    row = found(row, f"reply to {comment_kind}/{comment_id}")
    return Reply(*row), result.rowcount == 1


async def mark_posted(db: Database, reply_id: int, github_id: int, now: datetime) -> None:
    await db.write(
        "UPDATE review_replies SET github_id = ?, status = 'posted', posted_at = ? WHERE id = ?",
        (github_id, to_text(now), reply_id),
    )


async def mark_gone(db: Database, reply_id: int, now: datetime) -> None:
    """Its target no longer exists on GitHub (a deleted comment): nothing to post."""
    await db.write(
        "UPDATE review_replies SET status = 'gone', posted_at = ? WHERE id = ?",
        (to_text(now), reply_id),
    )


async def mark_failed(db: Database, reply_id: int, now: datetime) -> None:
    """GitHub refused it for good (a 4xx that is not a rate limit): not posted, not retried."""
    await db.write(
        "UPDATE review_replies SET status = 'failed', posted_at = ? WHERE id = ?",
        (to_text(now), reply_id),
    )


async def set_intent_body(db: Database, reply_id: int, body: str) -> None:
    """Fill in the text of an intent recorded before it was known (a command's answer)."""
    await db.write(
        "UPDATE review_replies SET body = ? WHERE id = ? AND status = 'intent'",
        (body, reply_id),
    )


async def get_reply(db: Database, reply_id: int) -> Reply | None:
    row = await db.fetchone(
        f"SELECT {_REPLY_COLUMNS} FROM review_replies WHERE id = ?", (reply_id,)
    )
    return None if row is None else Reply(*row)


async def list_replies(db: Database, pr_id: int, *, batch_id: int | None = None) -> list[Reply]:
    if batch_id is None:
        rows = await db.fetchall(
            f"SELECT {_REPLY_COLUMNS} FROM review_replies WHERE pr_id = ? ORDER BY id", (pr_id,)
        )
    else:
        rows = await db.fetchall(
            f"SELECT {_REPLY_COLUMNS} FROM review_replies WHERE pr_id = ? AND batch_id = ?"
            " ORDER BY id",
            (pr_id, batch_id),
        )
    return [Reply(*row) for row in rows]


async def reply_exists(db: Database, key: str) -> bool:
    found = await db.fetchval("SELECT 1 FROM review_replies WHERE idempotency_key = ?", (key,))
    return found is not None
