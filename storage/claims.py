"""Claims on shared work: which instance works a row, under a lease that expires (issue 13).

`deliveries`, `review_batches` and `pipelines` carry `claimed_by` and `lease_until` (migration
0013). An instance claims a row by setting both in one statement through the group commit; the
inner SELECT of a claim of several rows ends with the dialect's `skip_locked`
(storage/dialect.py): on PostgreSQL, instances claiming at once lock and take different rows;
SQLite's one writer serialises claims anyway. While it works, the instance renews the leases it
holds (`renew`, one statement per table); when it is done it clears the lease (`release`). A
row whose lease has passed is free again: its instance died mid-job, and another takes it over.
The bot side (bot/claims.py) holds the instance's identity, the lease length and the heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database, Params
from storage.dialect import skip_locked
from storage.timestamps import to_text

CLAIMABLE = ("deliveries", "review_batches", "pipelines")


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim's terms: who claims, when (the injected clock's now) and until when."""

    instance: str
    now: datetime
    until: datetime

    @property
    def now_text(self) -> str:
        return to_text(self.now)

    @property
    def until_text(self) -> str:
        return to_text(self.until)


def _table(table: str) -> str:
    if table not in CLAIMABLE:
        raise ValueError(f"{table} is not a claimable table")
    return table


def lease_free(alias: str = "") -> str:
    """The condition (one `?`: now) that a row's lease is free: never taken, cleared, or run
    out (its instance stopped renewing it)."""
    prefix = f"{alias}." if alias else ""
    return f"({prefix}lease_until IS NULL OR {prefix}lease_until < ?)"


def claim_many_statement(
    db: Database,
    table: str,
    lease: Lease,
    *,
    where: str,
    params: Params,
    order: str = "id",
    limit: int,
    also_set: str = "",
    returning: str = "id",
) -> tuple[str, Params]:
    """Claim up to `limit` rows of `table` matching `where` (with `params`), oldest by `order`
    first; `where` says itself whether a held lease may be taken (`lease_free`). `also_set`
    adds assignments (without parameters) to the claim's."""
    name = _table(table)
    extra = f", {also_set}" if also_set else ""
    sql = f"""
        UPDATE {name} SET claimed_by = ?, lease_until = ?{extra}
        WHERE id IN (
            SELECT id FROM {name} WHERE {where}
            ORDER BY {order}
            LIMIT ?{skip_locked(db.dialect)}
        )
        RETURNING {returning}
        """
    return sql, (lease.instance, lease.until_text, *params, limit)


async def claim_many(
    db: Database,
    table: str,
    lease: Lease,
    *,
    where: str,
    params: Params = (),
    limit: int = 100,
    held_too: bool = False,
) -> list[int]:
    """The ids of the rows matching `where` that were free or this instance's own, now claimed
    by it, in id order. `held_too` takes the rows whatever their lease (a SQLite file's one
    process at its start: the leases in it are its own last run's)."""
    if held_too:
        where, params = f"({where})", tuple(params)
    else:
        where = f"({where}) AND (claimed_by = ? OR {lease_free()})"
        params = (*params, lease.instance, lease.now_text)
    sql, values = claim_many_statement(db, table, lease, where=where, params=params, limit=limit)
    result = await db.write(sql, values)
    return sorted(int(row[0]) for row in result.rows)


async def claim_one(
    db: Database, table: str, row_id: int, lease: Lease, *, where: str = "1 = 1"
) -> bool:
    """Claim one row unless another instance holds a live lease on it (this instance's own is
    renewed). On PostgreSQL a concurrent claim waits for the row and then finds it held."""
    result = await db.write(
        f"UPDATE {_table(table)} SET claimed_by = ?, lease_until = ?"
        f" WHERE id = ? AND ({where}) AND (claimed_by = ? OR {lease_free()})",
        (lease.instance, lease.until_text, row_id, lease.instance, lease.now_text),
    )
    return result.rowcount == 1


def release_statement(table: str, row_id: int, instance: str) -> tuple[str, Params]:
    """The statement that ends this instance's lease on a row (its work there is over); the
    row keeps `claimed_by`, a record of who worked it last."""
    return (
        f"UPDATE {_table(table)} SET lease_until = NULL WHERE id = ? AND claimed_by = ?",
        (row_id, instance),
    )


async def release(db: Database, table: str, row_id: int, instance: str) -> None:
    await db.write(*release_statement(table, row_id, instance))


async def renew(db: Database, lease: Lease) -> int:
    """The heartbeat: every lease the instance holds, on every table, pushed to `lease.until`.
    A lease another instance took over (this one's ran out first) is not this one's any more,
    and stays theirs. Returns how many rows were renewed."""
    results = await db.write_many(
        [
            (
                f"UPDATE {table} SET lease_until = ?"
                " WHERE claimed_by = ? AND lease_until IS NOT NULL",
                (lease.until_text, lease.instance),
            )
            for table in CLAIMABLE
        ]
    )
    return sum(result.rowcount for result in results)


async def holder(db: Database, table: str, row_id: int, *, now: datetime) -> str | None:
    """The instance holding a live lease on the row, if any."""
    return await db.fetchval(
        f"SELECT claimed_by FROM {_table(table)} WHERE id = ? AND lease_until >= ?",
        (row_id, to_text(now)),
    )


async def schema_version(db: Database) -> int:
    """The newest migration applied to the database (by whichever instance)."""
    return int(await db.fetchval("SELECT MAX(version) FROM schema_migrations") or 0)
