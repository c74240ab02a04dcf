"""Pull requests biagent knows and the subscriptions that make it listen to them (issue 5).

One row per pull request (`pull_requests`): its head, state, pause and the count of biagent's
consecutive commits that the caps check. A `webhook_subscriptions` row means biagent answers
review comments on it. The review handlers (bot/reviews/on_*.py) keep both up to date from
webhooks; the worker and the control commands pause, resume and move the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


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
    stored = found(await find_pull_request(db, repository, number), f"{repository}#{number}")
    return stored


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
