"""risks: the risk cards a pipeline's risk phase identified, and who acknowledged them.

A high risk blocks the next phase until a person acknowledges it (bot/pipelines/gates.py);
medium and low ones are shown, not blocking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database, Params
from storage.timestamps import to_text

Statement = tuple[str, Params]
SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class Risk:
    id: int
    pipeline_id: int
    step_id: int | None
    title: str
    severity: str
    detail: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    note: str | None
    created_at: str


_COLUMNS = (
    "id, pipeline_id, step_id, title, severity, detail, acknowledged_by, acknowledged_at, note,"
    " created_at"
)


def add_risk(
    pipeline_id: int, step_id: int, *, title: str, severity: str, detail: str, now: datetime
) -> Statement:
    return (
        "INSERT INTO risks (pipeline_id, step_id, title, severity, detail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (pipeline_id, step_id, title, severity, detail, to_text(now)),
    )


def acknowledge(risk_id: int, *, by: str, note: str | None, now: datetime) -> Statement:
    return (
        "UPDATE risks SET acknowledged_by = ?, acknowledged_at = ?, note = ?"
        " WHERE id = ? AND acknowledged_at IS NULL",
        (by, to_text(now), note, risk_id),
    )


async def risks_of(db: Database, pipeline_id: int) -> list[Risk]:
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM risks WHERE pipeline_id = ? ORDER BY id", (pipeline_id,)
    )
    return [Risk(*row) for row in rows]


async def get_risk(db: Database, risk_id: int) -> Risk | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM risks WHERE id = ?", (risk_id,))
    return None if row is None else Risk(*row)


async def unacknowledged(
    db: Database, *, severity: str, ended: tuple[str, ...], limit: int = 100
) -> list[Risk]:
    """Risks of `severity` no one acknowledged yet, of pipelines not in an `ended` status,
    oldest first: what the status page asks a person to look at."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM risks WHERE acknowledged_at IS NULL AND severity = ?"
        f" AND pipeline_id IN (SELECT id FROM pipelines WHERE status NOT IN"
        f" ({', '.join('?' for _ in ended)})) ORDER BY id LIMIT ?",
        (severity, *ended, limit),
    )
    return [Risk(*row) for row in rows]
