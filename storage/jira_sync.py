"""JIRA sync bookkeeping: runs (sync_status), per-project cursors, the boundary set, leases.

The sync service (bot/jira/sync.py) is the only writer. A lease row keeps two syncs of one
project from running at once, across processes too (the server's scheduler and the CLI share
the database); a lease that is not renewed expires, so a killed sync does not block forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from storage.database import Database, inserted_id
from storage.timestamps import to_text


class RunStatus(StrEnum):
    """Where a sync run is: the `status` column of sync_status."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class SyncKind(StrEnum):
    """What a run was: the `kind` column of sync_status and the events' `kind`.

    A run is full or incremental; a failure before any project's run could begin is recorded
    as a run of its own kind: the project list could not be read, or a project's run could
    not start.
    """

    FULL = "full"
    INCREMENTAL = "incremental"
    PROJECTS = "projects"
    START = "start"


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    project: str
    kind: SyncKind
    trigger: str
    status: RunStatus
    started_at: str
    finished_at: str | None
    seen: int
    created: int
    updated: int
    deleted: int
    requests: int
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "kind": self.kind,
            "trigger": self.trigger,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "requests": self.requests,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class SyncCursor:
    project: str
    jql: str
    high_water_ms: int
    lookback_ms: int
    full_synced_at: str
    synced_at: str


def _run(row: Any) -> SyncRun:
    values = list(row)
    values[2], values[4] = SyncKind(values[2]), RunStatus(values[4])
    return SyncRun(*values)


_RUN_COLUMNS = (
    "id, project, kind, trigger, status, started_at, finished_at, seen, created, updated,"
    " deleted, requests, error"
)


async def start_run(
    db: Database, *, project: str, kind: SyncKind, trigger: str, now: datetime
) -> int:
    result = await db.write(
        "INSERT INTO sync_status (project, kind, trigger, status, started_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (project, kind, trigger, RunStatus.RUNNING, to_text(now)),
    )
    return inserted_id(result, f"the new sync run of {project}")


async def finish_run(
    db: Database,
    run_id: int,
    *,
    status: RunStatus,
    seen: int,
    created: int,
    updated: int,
    deleted: int,
    requests: int,
    error: str | None,
    now: datetime,
) -> None:
    await db.write(
        """
        UPDATE sync_status
        SET status = ?, finished_at = ?, seen = ?, created = ?, updated = ?, deleted = ?,
            requests = ?, error = ?
        WHERE id = ?
        """,
        (status, to_text(now), seen, created, updated, deleted, requests, error, run_id),
    )


async def recent_runs(
    db: Database, *, project: str | None = None, limit: int = 20
) -> list[SyncRun]:
    if project is None:
        rows = await db.fetchall(
            f"SELECT {_RUN_COLUMNS} FROM sync_status ORDER BY id DESC LIMIT ?", (limit,)
        )
    else:
        rows = await db.fetchall(
            f"SELECT {_RUN_COLUMNS} FROM sync_status WHERE project = ? ORDER BY id DESC LIMIT ?",
            (project, limit),
        )
    return [_run(row) for row in rows]


async def fail_abandoned_runs(
    db: Database, *, now: datetime, project: str | None = None, holder: str | None = None
) -> int:
    """Runs left `running` by a process that stopped are marked failed: those whose project's
    lease is no live process's (at start-up: another instance's or the command line's run
    goes on), or with `holder`, the ones of `project` while `holder` holds its lease (a new
    run began: any earlier one there is over)."""
    if holder is None:
        scope = (
            "NOT EXISTS (SELECT 1 FROM sync_leases l"
            " WHERE l.project = sync_status.project AND l.expires_at >= ?)"
        )
        scope_params: tuple[str, ...] = (to_text(now),)
    else:
        scope = (
            "project = ? AND EXISTS (SELECT 1 FROM sync_leases l"
            " WHERE l.project = sync_status.project AND l.holder = ?)"
        )
        scope_params = (project or "", holder)
    result = await db.write(
        f"UPDATE sync_status SET status = ?, finished_at = ?, error = ?"
        f" WHERE status = ? AND {scope}",
        (
            RunStatus.FAILED,
            to_text(now),
            "interrupted: the process stopped during the sync",
            RunStatus.RUNNING,
            *scope_params,
        ),
    )
    return result.rowcount


async def get_cursor(db: Database, project: str) -> SyncCursor | None:
    row = await db.fetchone(
        "SELECT project, jql, high_water_ms, lookback_ms, full_synced_at, synced_at"
        " FROM sync_cursors"
        " WHERE project = ?",
        (project,),
    )
    return None if row is None else SyncCursor(*row)


async def save_cursor(
    db: Database,
    *,
    project: str,
    jql: str,
    high_water_ms: int,
    lookback_ms: int,
    full: bool,
    now: datetime,
) -> None:
    """Advance the watermark and rebuild the boundary set from the mirror, atomically.

    The boundary set is every stored (id, updated) that the next incremental query, reaching
    back `lookback_ms` from the watermark, will see again.
    """
    stamp = to_text(now)
    statements: list[tuple[str, Any]] = [
        (
            """
            INSERT INTO sync_cursors
                (project, jql, high_water_ms, lookback_ms, full_synced_at, synced_at)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (project) DO UPDATE SET
                jql = excluded.jql, high_water_ms = excluded.high_water_ms,
                lookback_ms = excluded.lookback_ms,
                full_synced_at = CASE WHEN ? = 1 THEN excluded.full_synced_at
                                      ELSE sync_cursors.full_synced_at END,
                synced_at = excluded.synced_at
            """,
            (project, jql, high_water_ms, lookback_ms, stamp, stamp, 1 if full else 0),
        ),
        ("DELETE FROM sync_boundary WHERE project = ?", (project,)),
        (
            """
            INSERT INTO sync_boundary (project, issue_id, updated_ms)
            SELECT ?, id, updated_ms FROM tickets WHERE project = ? AND updated_ms >= ?
            """,
            (project, project, high_water_ms - lookback_ms),
        ),
    ]
    await db.write_many(statements)


async def boundary_of(db: Database, project: str) -> set[tuple[str, int]]:
    rows = await db.fetchall(
        "SELECT issue_id, updated_ms FROM sync_boundary WHERE project = ?", (project,)
    )
    return {(row[0], row[1]) for row in rows}


async def acquire_lease(
    db: Database, project: str, *, holder: str, now: datetime, ttl_s: float
) -> bool:
    """Take the project's lease if it is free, expired, or already ours; True when held."""
    result = await db.write(
        """
        INSERT INTO sync_leases (project, holder, expires_at) VALUES (?, ?, ?)
        ON CONFLICT (project) DO UPDATE SET
            holder = excluded.holder, expires_at = excluded.expires_at
        WHERE sync_leases.expires_at < ? OR sync_leases.holder = excluded.holder
        """,
        (project, holder, to_text(now + timedelta(seconds=ttl_s)), to_text(now)),
    )
    return result.rowcount == 1


async def release_lease(db: Database, project: str, *, holder: str) -> None:
    await db.write("DELETE FROM sync_leases WHERE project = ? AND holder = ?", (project, holder))


async def lease_holder(db: Database, project: str, *, now: datetime) -> str | None:
    return await db.fetchval(
        "SELECT holder FROM sync_leases WHERE project = ? AND expires_at >= ?",
        (project, to_text(now)),
    )
