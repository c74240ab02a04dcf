"""Worktree sessions, their per-repository worktrees, port blocks and setup questions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found, inserted_id
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class WorktreeRepo:
    id: int
    session_id: str
    repository_id: int
    path: str
    branch: str
    base_sha: str | None
    status: str
    push_url: str | None
    push_ref: str | None
    recorded_sha: str | None
    pr_number: int | None
    port_base: int | None
    setup_command: str | None
    setup_exit_code: int | None
    setup_output: str | None
    setup_seconds: float | None
    size_bytes: int | None
    size_measured_at: str | None
    created_at: str
    updated_at: str

    def as_json(self, *, port_count: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "repository_id": self.repository_id,
            "path": self.path,
            "branch": self.branch,
            "base_sha": self.base_sha,
            "status": self.status,
            "push_ref": self.push_ref,
            "recorded_sha": self.recorded_sha,
            "pr_number": self.pr_number,
            "ports": None
            if self.port_base is None
            else [self.port_base, self.port_base + port_count - 1],
            "setup_command": self.setup_command,
            "setup_exit_code": self.setup_exit_code,
            "setup_seconds": self.setup_seconds,
            "size_bytes": self.size_bytes,
            "size_measured_at": self.size_measured_at,
        }


@dataclass(frozen=True, slots=True)
class WorktreeSession:
    id: str
    owner: str
    branch: str
    stream: str
    status: str
    held_by: str | None
    error: str | None
    cleaned_reason: str | None
    created_at: str
    updated_at: str
    last_used_at: str
    cleaned_at: str | None
    instance_id: str | None  # whose disk it is on (BIAGENT_INSTANCE_ID); None: from before

    @property
    def live(self) -> bool:
        return self.status != "cleaned"


@dataclass(frozen=True, slots=True)
class InputRequest:
    id: str
    repository_id: int
    session_id: str | None
    question: str
    choices: tuple[str, ...]
    status: str
    answer: str | None
    created_at: str
    answered_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repository_id": self.repository_id,
            "session_id": self.session_id,
            "question": self.question,
            "choices": list(self.choices),
            "status": self.status,
            "answer": self.answer,
            "created_at": self.created_at,
            "answered_at": self.answered_at,
        }


_SESSION_COLUMNS = (
    "id, owner, branch, stream, status, held_by, error, cleaned_reason, created_at, updated_at,"
    " last_used_at, cleaned_at, instance_id"
)
_REPO_COLUMNS = (
    "id, session_id, repository_id, path, branch, base_sha, status, push_url, push_ref,"
    " recorded_sha, pr_number, port_base, setup_command, setup_exit_code, setup_output,"
    " setup_seconds, size_bytes, size_measured_at, created_at, updated_at"
)
_REQUEST_COLUMNS = (
    "id, repository_id, session_id, question, choices, status, answer, created_at, answered_at"
)


def _session(row: Any) -> WorktreeSession:
    return WorktreeSession(*row)


def _repo(row: Any) -> WorktreeRepo:
    return WorktreeRepo(*row)


def _request(row: Any) -> InputRequest:
    values = list(row)
    values[4] = tuple(json.loads(values[4]))
    return InputRequest(*values)


# -- sessions -------------------------------------------------------------------------------


async def create_session(
    db: Database,
    *,
    session_id: str,
    owner: str,
    branch: str,
    stream: str,
    now: datetime,
    instance_id: str | None = None,
) -> WorktreeSession:
    stamp = to_text(now)
    await db.write(
        """
        INSERT INTO worktree_sessions
            (id, owner, branch, stream, status, created_at, updated_at, last_used_at,
             instance_id)
        VALUES (?, ?, ?, ?, 'creating', ?, ?, ?, ?)
        """,
        (session_id, owner, branch, stream, stamp, stamp, stamp, instance_id),
    )
    stored = found(await get_session(db, session_id), f"worktree session {session_id}")
    return stored


async def set_session_status(
    db: Database, session_id: str, status: str, *, now: datetime, error: str | None = None
) -> None:
    await db.write(
        "UPDATE worktree_sessions SET status = ?, error = ?, updated_at = ? WHERE id = ?",
        (status, error, to_text(now), session_id),
    )


async def mark_session_cleaned(
    db: Database, session_id: str, *, reason: str, now: datetime
) -> None:
    stamp = to_text(now)
    await db.write_many(
        [
            (
                """
                UPDATE worktree_sessions SET status = 'cleaned', cleaned_reason = ?,
                    cleaned_at = ?, updated_at = ?, held_by = NULL
                WHERE id = ?
                """,
                (reason, stamp, stamp, session_id),
            ),
            (
                """
                UPDATE worktree_repos SET status = 'removed', port_base = NULL, updated_at = ?
                WHERE session_id = ?
                """,
                (stamp, session_id),
            ),
        ]
    )


async def hold_session(db: Database, session_id: str, holder: str, *, now: datetime) -> bool:
    """Mark a session in use by `holder`; False when another holder has it, or when it is
    being cleaned or is gone (a job never gets a session that is going away)."""
    stamp = to_text(now)
    result = await db.write(
        """
        UPDATE worktree_sessions SET held_by = ?, last_used_at = ?, updated_at = ?
        WHERE id = ? AND status NOT IN ('cleaning', 'cleaned')
          AND (held_by IS NULL OR held_by = ?)
        """,
        (holder, stamp, stamp, session_id, holder),
    )
    return result.rowcount > 0


async def release_session(db: Database, session_id: str, *, now: datetime) -> None:
    stamp = to_text(now)
    await db.write(
        """
        UPDATE worktree_sessions SET held_by = NULL, last_used_at = ?, updated_at = ?
        WHERE id = ?
        """,
        (stamp, stamp, session_id),
    )


async def touch_session(db: Database, session_id: str, *, now: datetime) -> None:
    await db.write(
        "UPDATE worktree_sessions SET last_used_at = ? WHERE id = ?", (to_text(now), session_id)
    )


async def get_session(db: Database, session_id: str) -> WorktreeSession | None:
    row = await db.fetchone(
        f"SELECT {_SESSION_COLUMNS} FROM worktree_sessions WHERE id = ?", (session_id,)
    )
    return None if row is None else _session(row)


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


async def list_sessions(
    db: Database, *, live_only: bool = True, instance_id: str | None = None
) -> list[WorktreeSession]:
    """Every session, or with `instance_id` those on that instance's disk alone."""
    conditions = ["status != 'cleaned'"] if live_only else []
    params: list[object] = []
    if instance_id is not None:
        conditions.append("instance_id = ?")
        params.append(instance_id)
    rows = await db.fetchall(
        f"""
        SELECT {_SESSION_COLUMNS} FROM worktree_sessions {_where(conditions)}
        ORDER BY created_at, id
        """,
        params,
    )
    return [_session(row) for row in rows]


async def live_sessions_for_owner(
    db: Database, owner: str, *, instance_id: str | None = None
) -> list[WorktreeSession]:
    return [
        session
        for session in await list_sessions(db, instance_id=instance_id)
        if session.owner == owner
    ]


async def move_sessions(db: Database, session_ids: Sequence[str], instance_id: str) -> None:
    """Record that these sessions are on `instance_id`'s disk (bot/worktrees/reconcile.py)."""
    if session_ids:
        await db.write_many(
            [
                ("UPDATE worktree_sessions SET instance_id = ? WHERE id = ?", (instance_id, id_))
                for id_ in session_ids
            ]
        )


# -- worktrees ------------------------------------------------------------------------------


async def add_repo(
    db: Database,
    *,
    session_id: str,
    repository_id: int,
    path: str,
    branch: str,
    port_block: int,
    first_port: int,
    push_url: str | None,
    push_ref: str | None,
    pr_number: int | None,
    now: datetime,
) -> WorktreeRepo:
    """Record a worktree before it is made, with the lowest free block of ports."""
    stamp = to_text(now)
    async with db.transaction() as connection:
        rows = await connection.fetchall(
            "SELECT port_base FROM worktree_repos WHERE port_base IS NOT NULL ORDER BY port_base"
        )
        taken = {row[0] for row in rows}
        port_base = first_port
        while port_base in taken:
            port_base += port_block
        inserted = await connection.execute(
            """
            INSERT INTO worktree_repos
                (session_id, repository_id, path, branch, status, push_url, push_ref,
                 pr_number, port_base, created_at, updated_at)
            VALUES (?, ?, ?, ?, 'creating', ?, ?, ?, ?, ?, ?)
            RETURNING id
            """,
            (
                session_id,
                repository_id,
                path,
                branch,
                push_url,
                push_ref,
                pr_number,
                port_base,
                stamp,
                stamp,
            ),
        )
        repo_id = inserted_id(inserted, "the new worktree repo")
    stored = found(await get_repo(db, repo_id), f"worktree repo {repo_id}")
    return stored


async def update_repo(db: Database, repo_id: int, *, now: datetime, **columns: Any) -> None:
    """Set some of a worktree's columns (names are checked against the table's)."""
    allowed = set(_REPO_COLUMNS.replace(" ", "").split(",")) - {"id", "session_id", "created_at"}
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"unknown worktree_repos columns: {', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{name} = ?" for name in columns)
    await db.write(
        f"UPDATE worktree_repos SET {assignments}, updated_at = ? WHERE id = ?",
        (*columns.values(), to_text(now), repo_id),
    )


async def get_repo(db: Database, repo_id: int) -> WorktreeRepo | None:
    row = await db.fetchone(f"SELECT {_REPO_COLUMNS} FROM worktree_repos WHERE id = ?", (repo_id,))
    return None if row is None else _repo(row)


async def repos_of_session(db: Database, session_id: str) -> list[WorktreeRepo]:
    rows = await db.fetchall(
        f"SELECT {_REPO_COLUMNS} FROM worktree_repos WHERE session_id = ? ORDER BY id",
        (session_id,),
    )
    return [_repo(row) for row in rows]


async def live_repos(
    db: Database,
    *,
    repository_id: int | None = None,
    pr_number: int | None = None,
    instance_id: str | None = None,
) -> list[WorktreeRepo]:
    """The worktrees not removed: of one repository (and pull request) when given, and with
    `instance_id` those on that instance's disk alone."""
    conditions: list[str] = ["status != 'removed'"]
    params: list[object] = []
    for column, value in (("repository_id", repository_id), ("pr_number", pr_number)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if instance_id is not None:
        conditions.append("session_id IN (SELECT id FROM worktree_sessions WHERE instance_id = ?)")
        params.append(instance_id)
    rows = await db.fetchall(
        f"SELECT {_REPO_COLUMNS} FROM worktree_repos {_where(conditions)} ORDER BY id", params
    )
    return [_repo(row) for row in rows]


async def live_repos_for_pull_request(
    db: Database, repository_id: int, pr_number: int, *, instance_id: str | None = None
) -> list[WorktreeRepo]:
    return await live_repos(
        db, repository_id=repository_id, pr_number=pr_number, instance_id=instance_id
    )


# -- questions to a person ------------------------------------------------------------------


async def add_input_request(
    db: Database,
    *,
    request_id: str,
    repository_id: int,
    session_id: str | None,
    question: str,
    choices: list[str],
    now: datetime,
) -> InputRequest:
    await db.write(
        """
        INSERT INTO worktree_input_requests
            (id, repository_id, session_id, question, choices, status, created_at)
        VALUES (?, ?, ?, ?, ?, 'pending', ?)
        """,
        (request_id, repository_id, session_id, question, json.dumps(choices), to_text(now)),
    )
    stored = found(await get_input_request(db, request_id), f"input request {request_id}")
    return stored


async def get_input_request(db: Database, request_id: str) -> InputRequest | None:
    row = await db.fetchone(
        f"SELECT {_REQUEST_COLUMNS} FROM worktree_input_requests WHERE id = ?", (request_id,)
    )
    return None if row is None else _request(row)


async def pending_input_requests(db: Database, repository_id: int) -> list[InputRequest]:
    rows = await db.fetchall(
        f"""
        SELECT {_REQUEST_COLUMNS} FROM worktree_input_requests
        WHERE repository_id = ? AND status = 'pending' ORDER BY created_at, id
        """,
        (repository_id,),
    )
    return [_request(row) for row in rows]


async def answer_input_requests(
    db: Database, repository_id: int, *, answer: str, now: datetime
) -> list[str]:
    """Close every pending question of the repository with `answer`; returns their ids."""
    pending = await pending_input_requests(db, repository_id)
    if pending:
        await db.write(
            """
            UPDATE worktree_input_requests SET status = 'answered', answer = ?, answered_at = ?
            WHERE repository_id = ? AND status = 'pending'
            """,
            (answer, to_text(now), repository_id),
        )
    return [request.id for request in pending]
