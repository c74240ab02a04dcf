"""Registered repositories: clone URL, setup answers, disk quota, idle TTL, ticket links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class Repository:
    id: int
    full_name: str
    clone_url: str
    default_branch: str | None
    installation_id: int | None
    setup_command: str | None
    test_command: str | None
    answered_by: str | None
    answered_at: str | None
    quota_bytes: int | None
    idle_ttl_seconds: int | None
    created_at: str
    updated_at: str

    @property
    def slug(self) -> str:
        """A file-system name for the repository: `octo/repo` -> `octo__repo`."""
        return self.full_name.replace("/", "__")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "full_name": self.full_name,
            "clone_url": self.clone_url,
            "default_branch": self.default_branch,
            "installation_id": self.installation_id,
            "setup_command": self.setup_command,
            "test_command": self.test_command,
            "answered_by": self.answered_by,
            "answered_at": self.answered_at,
            "quota_bytes": self.quota_bytes,
            "idle_ttl_seconds": self.idle_ttl_seconds,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_COLUMNS = (
    "id, full_name, clone_url, default_branch, installation_id, setup_command, test_command,"
    " answered_by, answered_at, quota_bytes, idle_ttl_seconds, created_at, updated_at"
)


def _repository(row: Any) -> Repository:
    return Repository(*row)


async def upsert(
    db: Database,
    *,
    full_name: str,
    clone_url: str,
    now: datetime,
    default_branch: str | None = None,
    installation_id: int | None = None,
) -> Repository:
    """Register a repository, or refresh what GitHub reports about it; keeps the answers."""
    stamp = to_text(now)
    await db.write(
        """
        INSERT INTO repositories
            (full_name, clone_url, default_branch, installation_id, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (full_name) DO UPDATE SET
            clone_url = excluded.clone_url,
            default_branch = COALESCE(excluded.default_branch, repositories.default_branch),
            installation_id = COALESCE(excluded.installation_id, repositories.installation_id),
            updated_at = excluded.updated_at
        """,
        (full_name, clone_url, default_branch, installation_id, stamp, stamp),
    )
    stored = found(await get_by_name(db, full_name), f"repository {full_name}")
    return stored


async def update_settings(
    db: Database,
    repository_id: int,
    *,
    now: datetime,
    quota_bytes: int | None = None,
    idle_ttl_seconds: int | None = None,
) -> None:
    await db.write(
        """
        UPDATE repositories SET
            quota_bytes = COALESCE(?, quota_bytes),
            idle_ttl_seconds = COALESCE(?, idle_ttl_seconds),
            updated_at = ?
        WHERE id = ?
        """,
        (quota_bytes, idle_ttl_seconds, to_text(now), repository_id),
    )


async def record_answer(
    db: Database,
    repository_id: int,
    *,
    setup_command: str | None,
    test_command: str | None,
    answered_by: str,
    now: datetime,
) -> None:
    """Store a person's setup/test commands for the repository (empty string: no setup)."""
    stamp = to_text(now)
    await db.write(
        """
        UPDATE repositories SET
            setup_command = COALESCE(?, setup_command),
            test_command = COALESCE(?, test_command),
            answered_by = ?, answered_at = ?, updated_at = ?
        WHERE id = ?
        """,
        (setup_command, test_command, answered_by, stamp, stamp, repository_id),
    )


async def set_default_branch(db: Database, repository_id: int, branch: str) -> None:
    await db.write(
        "UPDATE repositories SET default_branch = ? WHERE id = ? AND default_branch IS NULL",
        (branch, repository_id),
    )


async def get(db: Database, repository_id: int) -> Repository | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM repositories WHERE id = ?", (repository_id,))
    return None if row is None else _repository(row)


async def get_by_name(db: Database, full_name: str) -> Repository | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM repositories WHERE full_name = ?", (full_name,)
    )
    return None if row is None else _repository(row)


async def list_all(db: Database) -> list[Repository]:
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM repositories ORDER BY full_name")
    return [_repository(row) for row in rows]


async def delete(db: Database, repository_id: int) -> bool:
    results = await db.write_many(
        [
            (
                "DELETE FROM worktree_repos WHERE repository_id = ? AND status = 'removed'",
                (repository_id,),
            ),
            ("DELETE FROM repositories WHERE id = ?", (repository_id,)),
        ]
    )
    return results[1].rowcount > 0


async def link_ticket(db: Database, ticket_key: str, repository_ids: list[int]) -> None:
    """Set the repositories a ticket's work touches (replaces the previous list)."""
    statements: list[tuple[str, Any]] = [
        ("DELETE FROM ticket_repositories WHERE ticket_key = ?", (ticket_key,))
    ]
    statements += [
        (
            "INSERT INTO ticket_repositories (ticket_key, repository_id) VALUES (?, ?)",
            (ticket_key, repository_id),
        )
        for repository_id in sorted(set(repository_ids))
    ]
    await db.write_many(statements)


async def for_ticket(db: Database, ticket_key: str) -> list[Repository]:
    rows = await db.fetchall(
        f"""
        SELECT {", ".join("r." + column.strip() for column in _COLUMNS.split(","))}
        FROM repositories r
        JOIN ticket_repositories t ON t.repository_id = r.id
        WHERE t.ticket_key = ?
        ORDER BY r.full_name
        """,
        (ticket_key,),
    )
    return [_repository(row) for row in rows]
