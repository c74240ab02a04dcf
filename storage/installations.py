"""Installations of the GitHub App and the repositories each one grants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class Installation:
    id: int
    account_login: str
    account_type: str
    target_type: str | None
    suspended: bool
    deleted: bool
    repositories: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account_login,
            "account_type": self.account_type,
            "target_type": self.target_type,
            "suspended": self.suspended,
            "deleted": self.deleted,
            "repositories": list(self.repositories),
        }


def _upsert_statement(
    installation_id: int,
    account_login: str,
    account_type: str,
    target_type: str | None,
    now: datetime,
) -> tuple[str, tuple[Any, ...]]:
    stamp = to_text(now)
    return (
        """
        INSERT INTO installations
            (id, account_login, account_type, target_type, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            account_login = excluded.account_login, account_type = excluded.account_type,
            target_type = excluded.target_type, deleted = 0, updated_at = excluded.updated_at
        """,
        (installation_id, account_login, account_type, target_type, stamp, stamp),
    )


async def upsert(
    db: Database,
    *,
    installation_id: int,
    account_login: str,
    account_type: str,
    target_type: str | None,
    repositories: list[tuple[int, str, bool]] | None,
    now: datetime,
) -> None:
    """Record an installation; `repositories` (id, full_name, private) replaces the list."""
    statements = [_upsert_statement(installation_id, account_login, account_type, target_type, now)]
    if repositories is not None:
        statements.append(
            ("DELETE FROM installation_repositories WHERE installation_id = ?", (installation_id,))
        )
        statements += [_repository_statement(installation_id, repo, now) for repo in repositories]
    await db.write_many(statements)


def _repository_statement(
    installation_id: int, repository: tuple[int, str, bool], now: datetime
) -> tuple[str, tuple[Any, ...]]:
    repo_id, full_name, private = repository
    return (
        """
        INSERT INTO installation_repositories (id, installation_id, full_name, private, added_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            installation_id = excluded.installation_id, full_name = excluded.full_name,
            private = excluded.private
        """,
        (repo_id, installation_id, full_name, int(private), to_text(now)),
    )


async def add_repositories(
    db: Database, installation_id: int, repositories: list[tuple[int, str, bool]], now: datetime
) -> None:
    await db.write_many([_repository_statement(installation_id, r, now) for r in repositories])


async def remove_repositories(db: Database, installation_id: int, repo_ids: list[int]) -> None:
    await db.write_many(
        [
            (
                "DELETE FROM installation_repositories WHERE installation_id = ? AND id = ?",
                (installation_id, repo_id),
            )
            for repo_id in repo_ids
        ]
    )


async def set_flags(
    db: Database,
    installation_id: int,
    *,
    now: datetime,
    suspended: bool | None = None,
    deleted: bool | None = None,
) -> None:
    if suspended is not None:
        await db.write(
            "UPDATE installations SET suspended = ?, updated_at = ? WHERE id = ?",
            (int(suspended), to_text(now), installation_id),
        )
    if deleted is not None:
        await db.write_many(
            [
                (
                    "UPDATE installations SET deleted = ?, updated_at = ? WHERE id = ?",
                    (int(deleted), to_text(now), installation_id),
                ),
                (
                    "DELETE FROM installation_repositories WHERE installation_id = ?",
                    (installation_id,),
                ),
            ]
        )


async def repository_names(db: Database, installation_id: int) -> list[str]:
    """The full names of the repositories one installation grants, in name order (by the
    installation's index: the cost does not grow with the app's other installations)."""
    rows = await db.fetchall(
        "SELECT full_name FROM installation_repositories WHERE installation_id = ?"
        " ORDER BY full_name",
        (installation_id,),
    )
    return [str(row[0]) for row in rows]


async def list_all(db: Database) -> list[Installation]:
    rows = await db.fetchall(
        "SELECT id, account_login, account_type, target_type, suspended, deleted"
        " FROM installations ORDER BY account_login"
    )
    repo_rows = await db.fetchall(
        "SELECT installation_id, full_name FROM installation_repositories ORDER BY full_name"
    )
    repos: dict[int, list[str]] = {}
    for installation_id, full_name in repo_rows:
        repos.setdefault(installation_id, []).append(full_name)
    return [
        Installation(
            row[0],
            row[1],
            row[2],
            row[3],
            bool(row[4]),
            bool(row[5]),
            tuple(repos.get(row[0], ())),
        )
        for row in rows
    ]
