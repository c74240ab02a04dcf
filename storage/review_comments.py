"""Review comments as biagent has seen them, each with a version that an edit bumps (issue 5).

`review_comments` holds both kinds GitHub has (inline review comments and conversation comments),
keyed by (kind, id). Storing a comment says whether it is new, edited or the same, which is what
decides whether it goes into a batch (storage/review_batches.py). A deleted comment keeps its
row, leaves any batch still gathering and is never answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.timestamps import to_text


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
    body: str
    author_login: str
    author_type: str
    own: bool
    html_url: str | None
    created_at: str
    updated_at: str
    # Where it sits: only review comments (diff comments) have all of these.
    review_id: int | None = None
    in_reply_to_id: int | None = None
    path: str | None = None
    line: int | None = None
    start_line: int | None = None
    side: str | None = None
    diff_hunk: str | None = None
    commit_id: str | None = None


async def store_comment(
    db: Database, pr_id: int, comment: NewComment, now: datetime
) -> tuple[Comment, str]:
    """Insert or update a comment; returns it and `new`, `edited` (body changed) or `same`."""
    async with db.transaction() as connection:
        existing = await connection.fetchone(
            "SELECT body, version, deleted FROM review_comments WHERE kind = ? AND id = ?",
            (comment.kind, comment.id),
        )
        if existing is None:
            change = "new"
            await connection.execute(_INSERT_COMMENT, _insert_params(pr_id, comment, now))
        else:
            change = "edited" if existing[0] != comment.body and not existing[2] else "same"
            await connection.execute(
                _UPDATE_COMMENT,
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
    if stored is None:  # the row was written in the transaction above
        raise LookupError(f"review comment {comment.kind}/{comment.id} vanished after its write")
    return stored, change


_INSERT_COMMENT = f"""
    INSERT INTO review_comments ({_COMMENT_COLUMNS}, seen_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, 0, ?, ?, ?)
"""

# A deleted comment keeps its last body; an edit bumps the version, so it is worked again.
_UPDATE_COMMENT = """
    UPDATE review_comments SET
        body = CASE WHEN deleted = 1 THEN body ELSE ? END,
        version = version + ?,
        review_id = COALESCE(?, review_id),
        path = COALESCE(?, path), line = COALESCE(?, line),
        diff_hunk = COALESCE(?, diff_hunk),
        updated_at = ?
    WHERE kind = ? AND id = ?
"""


def _insert_params(pr_id: int, comment: NewComment, now: datetime) -> tuple[object, ...]:
    return (
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
    )


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
