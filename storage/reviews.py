"""Review response storage: pull requests, comments, batches, iterations, replies, reviewer states.

Plain SQL returning frozen records (issue 5). The read-modify-write steps that decide what is in
which batch run inside `db.transaction()`, so two deliveries bringing the same comment at once
still put it in one batch. Times are ISO text (storage/timestamps.py), which sorts as it compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from storage.database import Database
from storage.timestamps import from_text, to_text

OPEN_BATCH_STATUSES = ("gathering", "running", "responding", "paused")


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullRequest:
    id: int
    repository: str
    number: int
    installation_id: int
    github_id: int | None
    title: str
    author_login: str
    clone_url: str
    head_ref: str
    head_sha: str
    base_ref: str
    state: str
    review_state: str
    paused: bool
    pause_reason: str | None
    pause_count: int
    caps_reset_at: str | None
    consecutive_commits: int
    created_at: str
    updated_at: str

    @property
    def stream(self) -> str:
        return f"pr:{self.repository}#{self.number}"

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repository": self.repository,
            "number": self.number,
            "installation_id": self.installation_id,
            "title": self.title,
            "author": self.author_login,
            "head_ref": self.head_ref,
            "head_sha": self.head_sha,
            "base_ref": self.base_ref,
            "state": self.state,
            "review_state": self.review_state,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "consecutive_commits": self.consecutive_commits,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_PR_COLUMNS = (
    "id, repository, number, installation_id, github_id, title, author_login, clone_url,"
    " head_ref, head_sha, base_ref, state, review_state, paused, pause_reason, pause_count,"
    " caps_reset_at, consecutive_commits, created_at, updated_at"
)


def _pull_request(row: Any) -> PullRequest:
    values = list(row)
    values[13] = bool(values[13])
    return PullRequest(*values)


@dataclass(frozen=True, slots=True)
class Subscription:
    pr_id: int
    reason: str
    requested_by: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    kind: str
    pr_id: int
    review_id: int | None
    in_reply_to_id: int | None
    path: str | None
    line: int | None
    start_line: int | None
    side: str | None
    diff_hunk: str | None
    commit_id: str | None
    body: str
    author_login: str
    author_type: str
    own: bool
    html_url: str | None
    version: int
    deleted: bool
    resolved: bool
    created_at: str
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "review_id": self.review_id,
            "in_reply_to_id": self.in_reply_to_id,
            "path": self.path,
            "line": self.line,
            "body": self.body,
            "author": self.author_login,
            "own": self.own,
            "version": self.version,
            "deleted": self.deleted,
            "resolved": self.resolved,
            "created_at": self.created_at,
        }


_COMMENT_COLUMNS = (
    "id, kind, pr_id, review_id, in_reply_to_id, path, line, start_line, side, diff_hunk,"
    " commit_id, body, author_login, author_type, own, html_url, version, deleted, resolved,"
    " created_at, updated_at"
)


def _comment(row: Any) -> Comment:
    values = list(row)
    for index in (14, 17, 18):
        values[index] = bool(values[index])
    return Comment(*values)


@dataclass(frozen=True, slots=True)
class NewComment:
    """A comment as an event or the REST API shows it, before it is stored."""

    id: int
    kind: str
    review_id: int | None
    in_reply_to_id: int | None
    path: str | None
    line: int | None
    start_line: int | None
    side: str | None
    diff_hunk: str | None
    commit_id: str | None
    body: str
    author_login: str
    author_type: str
    own: bool
    html_url: str | None
    created_at: str
    updated_at: str


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
    " created_at, started_at, finished_at"
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


@dataclass(frozen=True, slots=True)
class ReviewerState:
    reviewer_login: str
    state: str
    review_id: int
    submitted_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer_login,
            "state": self.state,
            "review_id": self.review_id,
            "submitted_at": self.submitted_at,
        }


# -- pull requests ----------------------------------------------------------------------------


async def upsert_pull_request(
    db: Database,
    *,
    repository: str,
    number: int,
    installation_id: int,
    github_id: int | None,
    title: str,
    author_login: str,
    clone_url: str,
    head_ref: str,
    head_sha: str,
    base_ref: str,
    state: str,
    now: datetime,
) -> PullRequest:
    stamp = to_text(now)
    await db.write(
        """
        INSERT INTO pull_requests
            (repository, number, installation_id, github_id, title, author_login, clone_url,
             head_ref, head_sha, base_ref, state, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (repository, number) DO UPDATE SET
            installation_id = excluded.installation_id,
            github_id = COALESCE(excluded.github_id, pull_requests.github_id),
            title = excluded.title,
            author_login = excluded.author_login,
            clone_url = excluded.clone_url,
            head_ref = excluded.head_ref,
            base_ref = excluded.base_ref,
            state = excluded.state,
            updated_at = excluded.updated_at
        """,
        (
            repository,
            number,
            installation_id,
            github_id,
            title,
            author_login,
            clone_url,
            head_ref,
            head_sha,
            base_ref,
            state,
            stamp,
            stamp,
        ),
    )
    found = await find_pull_request(db, repository, number)
    assert found is not None
    return found


async def find_pull_request(db: Database, repository: str, number: int) -> PullRequest | None:
    row = await db.fetchone(
        f"SELECT {_PR_COLUMNS} FROM pull_requests WHERE repository = ? AND number = ?",
        (repository, number),
    )
    return None if row is None else _pull_request(row)


async def get_pull_request(db: Database, pr_id: int) -> PullRequest | None:
    row = await db.fetchone(f"SELECT {_PR_COLUMNS} FROM pull_requests WHERE id = ?", (pr_id,))
    return None if row is None else _pull_request(row)


async def list_watched_pull_requests(
    db: Database, *, open_only: bool = False, limit: int = 200
) -> list[PullRequest]:
    """Pull requests biagent listens to (a subscription), newest activity first."""
    where = "AND p.state = 'open'" if open_only else ""
    rows = await db.fetchall(
        f"""
        SELECT {", ".join("p." + c.strip() for c in _PR_COLUMNS.split(","))}
        FROM pull_requests p JOIN webhook_subscriptions s ON s.pr_id = p.id
        WHERE 1 = 1 {where}
        ORDER BY p.updated_at DESC, p.id DESC
        LIMIT ?
        """,
        (limit,),
    )
    return [_pull_request(row) for row in rows]


async def set_head(
    db: Database, pr_id: int, head_sha: str, *, pushed_by_biagent: bool, now: datetime
) -> None:
    """A new head: a person's push resets the count of consecutive biagent commits."""
    if pushed_by_biagent:
        await db.write(
            "UPDATE pull_requests SET head_sha = ?, updated_at = ? WHERE id = ?",
            (head_sha, to_text(now), pr_id),
        )
    else:
        await db.write(
            "UPDATE pull_requests SET head_sha = ?, consecutive_commits = 0, updated_at = ?"
            " WHERE id = ?",
            (head_sha, to_text(now), pr_id),
        )


async def count_biagent_commit(db: Database, pr_id: int, head_sha: str, now: datetime) -> None:
    await db.write(
        "UPDATE pull_requests SET consecutive_commits = consecutive_commits + 1, head_sha = ?,"
        " updated_at = ? WHERE id = ?",
        (head_sha, to_text(now), pr_id),
    )


async def set_state(db: Database, pr_id: int, state: str, now: datetime) -> None:
    await db.write(
        "UPDATE pull_requests SET state = ?, updated_at = ? WHERE id = ?",
        (state, to_text(now), pr_id),
    )


async def set_review_state(db: Database, pr_id: int, review_state: str, now: datetime) -> None:
    await db.write(
        "UPDATE pull_requests SET review_state = ?, updated_at = ? WHERE id = ?",
        (review_state, to_text(now), pr_id),
    )


async def pause(db: Database, pr_id: int, reason: str, now: datetime) -> int | None:
    """Pause a pull request; returns its pause number, or None when it was already paused."""
    result = await db.write(
        "UPDATE pull_requests SET paused = 1, pause_reason = ?, pause_count = pause_count + 1,"
        " updated_at = ? WHERE id = ? AND paused = 0",
        (reason, to_text(now), pr_id),
    )
    if result.rowcount == 0:
        return None
    return int(await db.fetchval("SELECT pause_count FROM pull_requests WHERE id = ?", (pr_id,)))


async def resume(db: Database, pr_id: int, now: datetime) -> bool:
    """Unpause; caps count again from now (the person who resumed has seen why it stopped)."""
    stamp = to_text(now)
    result = await db.write(
        "UPDATE pull_requests SET paused = 0, pause_reason = NULL, caps_reset_at = ?,"
        " consecutive_commits = 0, updated_at = ? WHERE id = ? AND paused = 1",
        (stamp, stamp, pr_id),
    )
    return result.rowcount == 1


async def subscribe(
    db: Database, pr_id: int, *, reason: str, requested_by: str | None, now: datetime
) -> bool:
    """Start listening to a pull request; False when it was already watched."""
    result = await db.write(
        "INSERT INTO webhook_subscriptions (pr_id, reason, requested_by, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (pr_id) DO NOTHING",
        (pr_id, reason, requested_by, to_text(now)),
    )
    return result.rowcount == 1


async def get_subscription(db: Database, pr_id: int) -> Subscription | None:
    row = await db.fetchone(
        "SELECT pr_id, reason, requested_by, created_at FROM webhook_subscriptions WHERE pr_id = ?",
        (pr_id,),
    )
    return None if row is None else Subscription(*row)


# -- comments ---------------------------------------------------------------------------------


async def store_comment(
    db: Database, pr_id: int, comment: NewComment, now: datetime
) -> tuple[Comment, str]:
    """Insert or update a comment; returns it and `new`, `edited` (body changed) or `same`."""
    async with db.transaction() as connection:
        async with connection.execute(
            "SELECT body, version, deleted FROM review_comments WHERE kind = ? AND id = ?",
            (comment.kind, comment.id),
        ) as cursor:
            existing = await cursor.fetchone()
        if existing is None:
            change = "new"
            await connection.execute(
                f"""
                INSERT INTO review_comments ({_COMMENT_COLUMNS}, seen_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, 0, ?, ?, ?)
                """,
                (
                    comment.id,
                    comment.kind,
                    pr_id,
                    comment.review_id,
                    comment.in_reply_to_id,
                    comment.path,
                    comment.line,
                    comment.start_line,
                    comment.side,
                    comment.diff_hunk,
                    comment.commit_id,
                    comment.body,
                    comment.author_login,
                    comment.author_type,
                    int(comment.own),
                    comment.html_url,
                    comment.created_at,
                    comment.updated_at,
                    to_text(now),
                ),
            )
        else:
            change = "edited" if existing[0] != comment.body and not existing[2] else "same"
            await connection.execute(
                """
                UPDATE review_comments SET
                    body = CASE WHEN deleted = 1 THEN body ELSE ? END,
                    version = version + ?,
                    review_id = COALESCE(?, review_id),
                    path = COALESCE(?, path), line = COALESCE(?, line),
                    diff_hunk = COALESCE(?, diff_hunk),
                    updated_at = ?
                WHERE kind = ? AND id = ?
                """,
                (
                    comment.body,
                    1 if change == "edited" else 0,
                    comment.review_id,
                    comment.path,
                    comment.line,
                    comment.diff_hunk,
                    comment.updated_at,
                    comment.kind,
                    comment.id,
                ),
            )
    stored = await get_comment(db, comment.kind, comment.id)
    assert stored is not None
    return stored, change


async def get_comment(db: Database, kind: str, comment_id: int) -> Comment | None:
    row = await db.fetchone(
        f"SELECT {_COMMENT_COLUMNS} FROM review_comments WHERE kind = ? AND id = ?",
        (kind, comment_id),
    )
    return None if row is None else _comment(row)


async def list_comments(db: Database, pr_id: int) -> list[Comment]:
    rows = await db.fetchall(
        f"SELECT {_COMMENT_COLUMNS} FROM review_comments WHERE pr_id = ? ORDER BY created_at, id",
        (pr_id,),
    )
    return [_comment(row) for row in rows]


async def mark_comment_deleted(db: Database, kind: str, comment_id: int) -> None:
    """Deleted on GitHub: it leaves a batch that is still gathering, and is never answered."""
    await db.write_many(
        [
            (
                "UPDATE review_comments SET deleted = 1 WHERE kind = ? AND id = ?",
                (kind, comment_id),
            ),
            (
                """
                DELETE FROM review_batch_items
                WHERE comment_kind = ? AND comment_id = ?
                  AND batch_id IN (SELECT id FROM review_batches WHERE status = 'gathering')
                """,
                (kind, comment_id),
            ),
        ]
    )


async def set_thread_resolved(
    db: Database, pr_id: int, comment_ids: list[int], resolved: bool
) -> None:
    if not comment_ids:
        return
    marks = ", ".join("?" for _ in comment_ids)
    await db.write(
        f"UPDATE review_comments SET resolved = ? WHERE pr_id = ? AND kind = 'review_comment'"
        f" AND (id IN ({marks}) OR in_reply_to_id IN ({marks}))",
        (int(resolved), pr_id, *comment_ids, *comment_ids),
    )


# -- batches ----------------------------------------------------------------------------------


async def gather(
    db: Database,
    pr_id: int,
    items: list[tuple[str, int]],
    *,
    now: datetime,
    debounce_s: float,
    max_wait_s: float,
    trigger: str = "comments",
) -> tuple[Batch | None, int]:
    """Put comments (kind, id) into the pull request's gathering batch; returns it and how many
    were added. A comment version already in some batch is not added again. The batch is due
    `debounce_s` after its last comment, and never later than `max_wait_s` after its first.
    """
    stamp = to_text(now)
    added = 0
    async with db.transaction() as connection:
        batch_row = await _gathering_row(connection, pr_id)
        for kind, comment_id in items:
            async with connection.execute(
                """
                SELECT c.version FROM review_comments c
                WHERE c.kind = ? AND c.id = ? AND c.deleted = 0 AND NOT EXISTS (
                    SELECT 1 FROM review_batch_items i
                    WHERE i.comment_kind = c.kind AND i.comment_id = c.id
                      AND i.comment_version = c.version)
                """,
                (kind, comment_id),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                continue
            if batch_row is None:
                cursor = await connection.execute(
                    """
                    INSERT INTO review_batches
                        (pr_id, status, trigger, first_comment_at, last_comment_at, due_at,
                         created_at)
                    VALUES (?, 'gathering', ?, ?, ?, ?, ?)
                    """,
                    (pr_id, trigger, stamp, stamp, stamp, stamp),
                )
                batch_row = await _gathering_row(connection, pr_id)
                assert batch_row is not None
            # A newer version of a comment replaces an older one still gathering.
            await connection.execute(
                "DELETE FROM review_batch_items WHERE batch_id = ? AND comment_kind = ?"
                " AND comment_id = ?",
                (batch_row[0], kind, comment_id),
            )
            await connection.execute(
                "INSERT INTO review_batch_items"
                " (batch_id, comment_kind, comment_id, comment_version, added_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (batch_row[0], kind, comment_id, row[0], stamp),
            )
            added += 1
        if batch_row is None:
            return None, 0
        if added:
            first = batch_row[5]
            cap = _plus(first, max_wait_s)
            quiet_end = to_text(now + timedelta(seconds=debounce_s))
            due = min(quiet_end, cap)
            if batch_row[8] is not None:  # closed by a review: stays due now
                due = min(due, batch_row[7])
            await connection.execute(
                "UPDATE review_batches SET last_comment_at = ?, due_at = ? WHERE id = ?",
                (stamp, due, batch_row[0]),
            )
    batch = await get_batch(db, int(batch_row[0]))
    return batch, added


def _plus(stamp: str, seconds: float) -> str:
    return to_text(from_text(stamp) + timedelta(seconds=seconds))


async def _gathering_row(connection: aiosqlite.Connection, pr_id: int) -> Any:
    async with connection.execute(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE pr_id = ? AND status = 'gathering'",
        (pr_id,),
    ) as cursor:
        return await cursor.fetchone()


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
    row = await db.fetchone(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE pr_id = ? AND status = 'gathering'",
        (pr_id,),
    )
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
        cursor = await connection.execute(
            "UPDATE review_batches SET status = 'running', head_sha = ?, started_at = ?"
            " WHERE id = ? AND status = 'gathering'",
            (head_sha, to_text(now), batch_id),
        )
        if cursor.rowcount != 1:
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
    finished = to_text(now) if status in ("done", "dropped", "skipped") else None
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


async def count_responding_attempt(db: Database, batch_id: int) -> int:
    await db.write("UPDATE review_batches SET attempts = attempts + 1 WHERE id = ?", (batch_id,))
    return int(await db.fetchval("SELECT attempts FROM review_batches WHERE id = ?", (batch_id,)))


async def set_check_run(
    db: Database, batch_id: int, check_run_id: int | None, head_sha: str | None
) -> None:
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
        existing = await _gathering_row(connection, old.pr_id)
        if existing is None:
            cursor = await connection.execute(
                """
                INSERT INTO review_batches
                    (pr_id, status, trigger, retry_of, first_comment_at, last_comment_at, due_at,
                     created_at)
                VALUES (?, 'gathering', 'retry', ?, ?, ?, ?, ?)
                """,
                (old.pr_id, batch_id, stamp, stamp, stamp, stamp),
            )
            new_id = cursor.lastrowid
        else:
            new_id = existing[0]
            await connection.execute(
                "UPDATE review_batches SET due_at = ?, retry_of = ? WHERE id = ?",
                (stamp, batch_id, new_id),
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
            (new_id, stamp, batch_id),
        )
    assert new_id is not None
    return await get_batch(db, int(new_id))


async def batch_for_check_run(db: Database, check_run_id: int) -> Batch | None:
    row = await db.fetchone(
        f"SELECT {_BATCH_COLUMNS} FROM review_batches WHERE check_run_id = ?", (check_run_id,)
    )
    return None if row is None else _batch(row)


# -- iterations -------------------------------------------------------------------------------


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
    created = await iteration_for_batch(db, batch.id)
    assert created is not None
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


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    comment_kind: str
    comment_id: int
    outcome: str
    detail: str
    commit_sha: str | None


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


async def runs_since(db: Database, pr_id: int, since: datetime) -> int:
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM review_iterations WHERE pr_id = ? AND started_at >= ?",
            (pr_id, to_text(since)),
        )
    )


async def pr_cost(db: Database, pr_id: int, *, since: datetime | None = None) -> float:
    if since is None:
        value = await db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM review_iterations WHERE pr_id = ?", (pr_id,)
        )
    else:
        value = await db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM review_iterations"
            " WHERE pr_id = ? AND started_at >= ?",
            (pr_id, to_text(since)),
        )
    return float(value or 0.0)


async def installation_cost(db: Database, installation_id: int, *, since: datetime) -> float:
    value = await db.fetchval(
        """
        SELECT COALESCE(SUM(i.cost_usd), 0)
        FROM review_iterations i JOIN pull_requests p ON p.id = i.pr_id
        WHERE p.installation_id = ? AND i.started_at >= ?
        """,
        (installation_id, to_text(since)),
    )
    return float(value or 0.0)


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


# -- replies ----------------------------------------------------------------------------------


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
    assert row is not None
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


# -- reviewer states --------------------------------------------------------------------------


async def record_reviewer_state(
    db: Database, pr_id: int, *, reviewer: str, state: str, review_id: int, submitted_at: str
) -> bool:
    """Keep each reviewer's latest review; False when this review is older than the one kept."""
    result = await db.write(
        """
        INSERT INTO review_states (pr_id, reviewer_login, state, review_id, submitted_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (pr_id, reviewer_login) DO UPDATE SET
            state = excluded.state, review_id = excluded.review_id,
            submitted_at = excluded.submitted_at
        WHERE excluded.submitted_at >= review_states.submitted_at
        """,
        (pr_id, reviewer, state, review_id, submitted_at),
    )
    return result.rowcount == 1


async def dismiss_review(db: Database, pr_id: int, review_id: int) -> bool:
    result = await db.write(
        "UPDATE review_states SET state = 'dismissed' WHERE pr_id = ? AND review_id = ?",
        (pr_id, review_id),
    )
    return result.rowcount == 1


async def reviewer_states(db: Database, pr_id: int) -> list[ReviewerState]:
    rows = await db.fetchall(
        "SELECT reviewer_login, state, review_id, submitted_at FROM review_states"
        " WHERE pr_id = ? ORDER BY reviewer_login",
        (pr_id,),
    )
    return [ReviewerState(*row) for row in rows]
