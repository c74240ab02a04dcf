"""Instance metadata kept in the `meta` table: the database epoch and the API token's hash."""

from __future__ import annotations

from storage.database import Database, found


async def get_value(db: Database, key: str) -> str | None:
    return await db.fetchval("SELECT value FROM meta WHERE key = ?", (key,))


async def set_value_once(db: Database, key: str, value: str) -> str:
    """Store `value` unless the key already has one; returns the value that is stored."""
    await db.write(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value)
    )
    stored = found(await get_value(db, key), f"meta {key!r}")
    return stored


async def set_value(db: Database, key: str, value: str) -> None:
    await db.write(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
