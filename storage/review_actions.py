"""What biagent does on a pull request after a pushed iteration, done once (issue 14).

`review_actions` holds each thread resolved and each review re-requested under an idempotency
key, as `review_replies` holds comments: the intent is committed before the call to GitHub and
its end (done, skipped with why, failed with why) after, so a retry, a restart or a second
pass over the same iteration never acts twice (bot/reviews/after_push.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class Action:
    """One thing done on GitHub after a pushed iteration, as stored under its key."""

    id: int
    pr_id: int
    iteration_id: int
    idempotency_key: str
    kind: str  # resolve_thread, rerequest_review
    target: str  # the thread's root comment id; the reviewers' logins, comma separated (one
    # login when GitHub refused them all at once and each was asked for alone)
    status: str  # intent, done, skipped, failed
    detail: str | None
    created_at: str
    finished_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "iteration_id": self.iteration_id,
            "kind": self.kind,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


_ACTION_COLUMNS = (
    "id, pr_id, iteration_id, idempotency_key, kind, target, status, detail, created_at,"
    " finished_at"
)


async def record_intent(
    db: Database,
    *,
    pr_id: int,
    iteration_id: int,
    key: str,
    kind: str,
    target: str,
    now: datetime,
) -> tuple[Action, bool]:
    """The action under `key`, recorded now if it is new; returns it and whether it is."""
    result = await db.write(
        """
        INSERT INTO review_actions
            (pr_id, iteration_id, idempotency_key, kind, target, status, created_at)
        VALUES (?, ?, ?, ?, ?, 'intent', ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        (pr_id, iteration_id, key, kind, target, to_text(now)),
    )
    row = await db.fetchone(
        f"SELECT {_ACTION_COLUMNS} FROM review_actions WHERE idempotency_key = ?", (key,)
    )
    return Action(*found(row, f"review action {key}")), result.rowcount == 1


async def finish(
    db: Database, action_id: int, status: str, *, now: datetime, detail: str | None = None
) -> None:
    """The action ended: `done`, `skipped` or `failed`, with its detail."""
    await db.write(
        "UPDATE review_actions SET status = ?, detail = COALESCE(?, detail), finished_at = ?"
        " WHERE id = ?",
        (status, detail, to_text(now), action_id),
    )


async def get_action(db: Database, action_id: int) -> Action:
    """The action with this id, as stored now."""
    row = await db.fetchone(
        f"SELECT {_ACTION_COLUMNS} FROM review_actions WHERE id = ?", (action_id,)
    )
    return Action(*found(row, f"review action {action_id}"))


async def list_actions(db: Database, pr_id: int) -> list[Action]:
    """The pull request's actions, oldest first."""
    rows = await db.fetchall(
        f"SELECT {_ACTION_COLUMNS} FROM review_actions WHERE pr_id = ? ORDER BY id", (pr_id,)
    )
    return [Action(*row) for row in rows]
