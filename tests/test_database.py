"""The driver: group commit, atomic write_many, reads that see every committed write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.database import Database, available_migrations
from tests.conftest import OpenDatabase

pytestmark = pytest.mark.both_databases


@pytest.fixture
async def db(open_database: OpenDatabase) -> Database:
    return await open_database("x.db", checkpoint_every_s=0.5)


async def test_reads_interleaved_with_writes_see_every_committed_row(db: Database) -> None:
    """A read after a committed write sees it, however many other reads are in flight."""

    async def write_then_read(n: int) -> bool:
        await db.write("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{n}", str(n)))
        return await db.fetchval("SELECT value FROM meta WHERE key = ?", (f"k{n}",)) == str(n)

    async def busy_reader() -> None:
        for _ in range(200):
            await db.fetchall("SELECT * FROM meta")

    readers = [asyncio.create_task(busy_reader()) for _ in range(4)]
    seen = await asyncio.gather(*(write_then_read(n) for n in range(300)))
    await asyncio.gather(*readers)
    assert all(seen)


async def test_concurrent_writes_share_commits_and_a_failing_one_fails_alone(db: Database) -> None:
    await db.write("INSERT INTO meta (key, value) VALUES ('taken', '1')")
    writes = [
        db.write("INSERT INTO meta (key, value) VALUES (?, '1')", (f"w{n}",)) for n in range(50)
    ]
    duplicate = db.write("INSERT INTO meta (key, value) VALUES ('taken', '2')")
    results = await asyncio.gather(*writes, duplicate, return_exceptions=True)
    assert all(not isinstance(r, Exception) for r in results[:-1])
    assert isinstance(results[-1], Exception)
    assert await db.fetchval("SELECT COUNT(*) FROM meta WHERE key LIKE 'w%'") == 50
    assert await db.fetchval("SELECT value FROM meta WHERE key = 'taken'") == "1"


async def test_write_many_is_all_or_nothing(db: Database) -> None:
    await db.write_many(
        [
            ("INSERT INTO meta (key, value) VALUES ('b', '1')", ()),
            ("INSERT INTO meta (key, value) VALUES ('c', '1')", ()),
        ]
    )
    assert await db.fetchval("SELECT COUNT(*) FROM meta WHERE key IN ('b', 'c')") == 2
    with pytest.raises(Exception, match=r"(?i)unique"):
        await db.write_many(
            [
                ("INSERT INTO meta (key, value) VALUES ('a', '1')", ()),
                ("INSERT INTO meta (key, value) VALUES ('a', '2')", ()),
            ]
        )
    assert await db.fetchval("SELECT COUNT(*) FROM meta WHERE key = 'a'") == 0


async def test_migrations_are_applied_once(db: Database) -> None:
    # Numbers may have gaps while branches that each took one are in flight.
    version = await db.migrate()
    shipped = available_migrations()
    assert version == shipped[-1][0]
    assert await db.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(shipped)


@pytest.mark.parametrize("database_engine", ["sqlite"], indirect=True)  # WAL is SQLite's
async def test_commits_leave_checkpoints_to_their_own_connection(
    tmp_path: Path, open_database: OpenDatabase
) -> None:
    db = await open_database("x.db", checkpoint_every_s=3600)
    main_file = tmp_path / "x.db"
    before = main_file.stat().st_size
    payload = "x" * 30_000
    await asyncio.gather(
        *(
            db.write("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{n}", payload))
            for n in range(300)
        )
    )
    # 9 MB committed: past SQLite's default autocheckpoint, yet none ran in a commit.
    assert main_file.stat().st_size == before
    await db.checkpoint()
    assert main_file.stat().st_size > 300 * 30_000
