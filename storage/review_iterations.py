"""Review iterations: one engine run per batch, with its report, commit and cost (issue 5).

The engine's report and each comment's checked outcome are stored here before any reply is
posted. The commit an iteration pushes is recorded before the push, so the `synchronize`
webhook it causes is known as biagent's own (only a person's push resets the count of consecutive
biagent commits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.review_batches import Batch
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class Iteration:
    id: int
    pr_id: int
    batch_id: int
    number: int
    head_sha: str
    status: str
    commit_sha: str | None
    tests_summary: str | None
    cost_usd: float
    error: str | None
    report: list[dict[str, Any]] | None
    started_at: str
    finished_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "batch_id": self.batch_id,
            "number": self.number,
            "head_sha": self.head_sha,
            "status": self.status,
            "commit_sha": self.commit_sha,
            "tests_summary": self.tests_summary,
            "cost_usd": self.cost_usd,
            "error": self.error,
            "report": self.report,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


_ITERATION_COLUMNS = (
    "id, pr_id, batch_id, number, head_sha, status, commit_sha, tests_summary, cost_usd, error,"
    " report, started_at, finished_at"
)


def _iteration(row: Any) -> Iteration:
    values = list(row)
    values[10] = None if values[10] is None else json.loads(values[10])
    return Iteration(*values)


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    comment_kind: str
    comment_id: int
    outcome: str
    detail: str
    commit_sha: str | None


@dataclass(frozen=True, slots=True)
class AnsweredBefore:
    """A comment's outcome in an earlier iteration of the same pull request."""

    comment_kind: str
    comment_id: int
    iteration: int
    outcome: str
    detail: str
    commit_sha: str | None


async def answered_before(db: Database, pr_id: int, *, before_batch: int) -> list[AnsweredBefore]:
    """Every outcome of the pull request's iterations of batches before `before_batch`,
    oldest iteration first."""
    rows = await db.fetchall(
        """
        SELECT i.comment_kind, i.comment_id, it.number, i.outcome, COALESCE(i.detail, ''),
               i.commit_sha
        FROM review_batch_items i JOIN review_iterations it ON it.batch_id = i.batch_id
        WHERE it.pr_id = ? AND i.batch_id < ? AND i.outcome IS NOT NULL
        ORDER BY it.number, i.comment_id
        """,
        (pr_id, before_batch),
    )
    return [AnsweredBefore(*row) for row in rows]


async def start_iteration(db: Database, batch: Batch, *, head_sha: str, now: datetime) -> Iteration:
    """The batch's iteration (one per batch): made on first call, returned as is after that."""
    existing = await iteration_for_batch(db, batch.id)
    if existing is not None:
        return existing
    await db.write(
        """
        INSERT INTO review_iterations (pr_id, batch_id, number, head_sha, started_at)
        VALUES (?, ?, (SELECT COALESCE(MAX(number), 0) + 1 FROM review_iterations
                       WHERE pr_id = ?), ?, ?)
        ON CONFLICT (batch_id) DO NOTHING
        """,
        (batch.pr_id, batch.id, batch.pr_id, head_sha, to_text(now)),
    )
    created = found(await iteration_for_batch(db, batch.id), f"iteration of batch {batch.id}")
    return created


async def iteration_for_batch(db: Database, batch_id: int) -> Iteration | None:
    row = await db.fetchone(
        f"SELECT {_ITERATION_COLUMNS} FROM review_iterations WHERE batch_id = ?", (batch_id,)
    )
    return None if row is None else _iteration(row)


async def list_iterations(db: Database, pr_id: int) -> list[Iteration]:
    rows = await db.fetchall(
        f"SELECT {_ITERATION_COLUMNS} FROM review_iterations WHERE pr_id = ? ORDER BY number",
        (pr_id,),
    )
    return [_iteration(row) for row in rows]


async def record_engine_report(
    db: Database,
    *,
    iteration_id: int,
    batch_id: int,
    status: str,
    commit_sha: str | None,
    tests_summary: str | None,
    cost_usd: float,
    error: str | None,
    report: list[dict[str, Any]],
    outcomes: list[ItemOutcome],
    now: datetime,
) -> None:
    """The engine's report and each comment's checked outcome, stored before any reply."""
    statements: list[tuple[str, Any]] = [
        (
            """
            UPDATE review_iterations SET status = ?, commit_sha = ?, tests_summary = ?,
                cost_usd = ?, error = ?, report = ?, finished_at = ?
            WHERE id = ?
            """,
            (
                status,
                commit_sha,
                tests_summary,
                cost_usd,
                error,
                json.dumps(report),
                to_text(now),
                iteration_id,
            ),
        ),
        (
            "UPDATE review_batches SET status = 'responding', outcome = ? WHERE id = ?",
            (status, batch_id),
        ),
    ]
    statements += [
        (
            "UPDATE review_batch_items SET outcome = ?, detail = ?, commit_sha = ?"
            " WHERE batch_id = ? AND comment_kind = ? AND comment_id = ?",
            (
                item.outcome,
                item.detail,
                item.commit_sha,
                batch_id,
                item.comment_kind,
                item.comment_id,
            ),
        )
        for item in outcomes
    ]
    await db.write_many(statements)


async def note_pushed_commit(db: Database, batch_id: int, sha: str) -> None:
    """The commit the engine is about to push for a batch. Recorded before the push, so the
    `synchronize` it causes is known as biagent's own however fast it arrives; the engine's
    report later stores what was really pushed."""
    await db.write(
        "UPDATE review_iterations SET commit_sha = ? WHERE batch_id = ?", (sha, batch_id)
    )


async def is_biagent_commit(db: Database, pr_id: int, sha: str) -> bool:
    found = await db.fetchval(
        "SELECT 1 FROM review_iterations WHERE pr_id = ? AND commit_sha = ?", (pr_id, sha)
    )
    return found is not None
