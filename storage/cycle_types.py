"""cycle_types, phase_definitions, cycle_phase_config, cycle_rules: the pipelines' recipes.

A cycle type (spike, backend, ...) is an ordered list of phases; a phase names its agent,
prompt template, tools, gate and limits, and a cycle type may override the gate and limits of a
phase it uses. These rows are the one source of what a pipeline runs (docs/pipelines.md):
seeded by migration 0007, edited through `PUT /api/cycle-types/{name}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class PhaseDefinition:
    name: str
    agent: str
    prompt_template: str
    tools: tuple[str, ...] | None  # None: the agent's own tools
    gate: str
    artifact_kind: str | None
    max_cost_usd: float | None
    time_limit_s: int | None


@dataclass(frozen=True, slots=True)
class CyclePhase:
    """A phase as one cycle type uses it: the cycle type's overrides already applied."""

    position: int
    phase: PhaseDefinition
    gate: str
    max_cost_usd: float | None
    time_limit_s: int | None


@dataclass(frozen=True, slots=True)
class CycleType:
    name: str
    description: str
    max_cost_usd: float | None
    step_max_cost_usd: float | None
    phases: tuple[CyclePhase, ...]


@dataclass(frozen=True, slots=True)
class PhaseChoice:
    """One phase of a cycle type as a person sets it: the phase and optional overrides."""

    phase: str
    gate: str | None = None
    max_cost_usd: float | None = None
    time_limit_s: int | None = None


@dataclass(frozen=True, slots=True)
class CycleRule:
    id: int
    position: int
    cycle_type: str
    issue_type: str | None
    label: str | None
    component: str | None
    summary_word: str | None


_PHASE_COLUMNS = (
    "name, agent, prompt_template, tools, gate, artifact_kind, max_cost_usd, time_limit_s"
)


def _phase(row: Any) -> PhaseDefinition:
    tools = None if row[3] is None else tuple(json.loads(row[3]))
    return PhaseDefinition(row[0], row[1], row[2], tools, row[4], row[5], row[6], row[7])


async def list_phase_definitions(db: Database) -> list[PhaseDefinition]:
    rows = await db.fetchall(f"SELECT {_PHASE_COLUMNS} FROM phase_definitions ORDER BY name")
    return [_phase(row) for row in rows]


async def list_cycle_types(db: Database) -> list[CycleType]:
    names = await db.fetchall("SELECT name FROM cycle_types ORDER BY name")
    found = [await get_cycle_type(db, row[0]) for row in names]
    return [cycle_type for cycle_type in found if cycle_type is not None]


async def get_cycle_type(db: Database, name: str) -> CycleType | None:
    head = await db.fetchone(
        "SELECT name, description, max_cost_usd, step_max_cost_usd FROM cycle_types WHERE name = ?",
        (name,),
    )
    if head is None:
        return None
    rows = await db.fetchall(
        f"""
        SELECT c.position, c.gate, c.max_cost_usd, c.time_limit_s,
               {", ".join("p." + column.strip() for column in _PHASE_COLUMNS.split(","))}
        FROM cycle_phase_config c JOIN phase_definitions p ON p.name = c.phase
        WHERE c.cycle_type = ?
        ORDER BY c.position
        """,
        (name,),
    )
    phases = []
    for row in rows:
        phase = _phase(tuple(row)[4:])
        phases.append(
            CyclePhase(
                position=row[0],
                phase=phase,
                gate=row[1] if row[1] is not None else phase.gate,
                max_cost_usd=row[2] if row[2] is not None else phase.max_cost_usd,
                time_limit_s=row[3] if row[3] is not None else phase.time_limit_s,
            )
        )
    return CycleType(head[0], head[1], head[2], head[3], tuple(phases))


async def save_cycle_type(
    db: Database,
    name: str,
    *,
    description: str,
    max_cost_usd: float | None,
    step_max_cost_usd: float | None,
    phases: list[PhaseChoice],
    now: datetime,
) -> CycleType:
    """Create or replace a cycle type and its ordered phases, in one transaction. The caller
    has checked that every phase exists and none repeats."""
    stamp = to_text(now)
    async with db.transaction() as connection:
        await connection.execute(
            """
            INSERT INTO cycle_types (name, description, max_cost_usd, step_max_cost_usd,
                                     updated_at)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET
                description = excluded.description, max_cost_usd = excluded.max_cost_usd,
                step_max_cost_usd = excluded.step_max_cost_usd, updated_at = excluded.updated_at
            """,
            (name, description, max_cost_usd, step_max_cost_usd, stamp),
        )
        await connection.execute("DELETE FROM cycle_phase_config WHERE cycle_type = ?", (name,))
        for position, choice in enumerate(phases, start=1):
            await connection.execute(
                "INSERT INTO cycle_phase_config"
                " (cycle_type, position, phase, gate, max_cost_usd, time_limit_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    position,
                    choice.phase,
                    choice.gate,
                    choice.max_cost_usd,
                    choice.time_limit_s,
                ),
            )
    saved = await get_cycle_type(db, name)
    if saved is None:
        raise LookupError(f"cycle type {name!r} vanished after its write")
    return saved


async def list_rules(db: Database) -> list[CycleRule]:
    rows = await db.fetchall(
        "SELECT id, position, cycle_type, issue_type, label, component, summary_word"
        " FROM cycle_rules ORDER BY position, id"
    )
    return [CycleRule(*row) for row in rows]


async def get_phase_definition(db: Database, name: str) -> PhaseDefinition | None:
    row = await db.fetchone(
        f"SELECT {_PHASE_COLUMNS} FROM phase_definitions WHERE name = ?", (name,)
    )
    return None if row is None else _phase(row)
