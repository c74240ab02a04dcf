"""PostgreSQL behind the storage API: the URL selects it, the migration sets match SQLite's, the
schema version is checked, rows read like sqlite3.Row, lost connections and timeouts behave,
and the password never reaches a log or a banner (storage/postgres.py, storage/dialect.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bot.config import ConfigError, load_settings
from storage import events as event_store
from storage.database import (
    Database,
    DatabaseError,
    DatabaseUnavailable,
    available_migrations,
    redacted_url,
)
from storage.dialect import to_postgres
from storage.postgres import PostgresDatabase
from tests.conftest import POSTGRES_BINDIR, OpenDatabase
from tests.postgres_server import PASSWORD, PostgresServer

pytestmark = [
    pytest.mark.both_databases,
    pytest.mark.skipif(POSTGRES_BINDIR is None, reason="PostgreSQL is not installed"),
]


def test_the_url_selects_the_engine_and_its_password_is_never_shown() -> None:
    url = "postgresql://bot:hunter2-secret@db.internal:5432/biagent"
    for given in (url, url.replace("postgresql://", "postgres://")):
        settings = load_settings({"DATABASE_URL": given, "DATABASE_POOL_SIZE": "4"})
        assert settings.database_url == given and settings.database_pool_size == 4
        assert not any("hunter2" in line for line in settings.summary())
        assert "bot:***@db.internal:5432/biagent" in "\n".join(settings.summary())
    with pytest.raises(ConfigError, match="DATABASE_URL: expected sqlite:///path or postgresql"):
        load_settings({"DATABASE_URL": "mysql://root@localhost/x"})
    assert redacted_url("sqlite:///biagent.db") == "sqlite:///biagent.db"


def test_placeholders_become_psycopg_s_and_literal_percents_are_doubled() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE x = ? AND y LIKE '50%' AND z = ?"
    assert to_postgres(sql) == (
        "SELECT '?', \"a?\" FROM t WHERE x = %s AND y LIKE '50%%' AND z = %s"
    )
    assert to_postgres("VALUES (?, last_insert_rowid())") == "VALUES (%s, lastval())"


def _sqlite_columns(path: Path) -> dict[str, list[str]]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            table: [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            for table in tables
        }


def _postgres_columns(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_both_migration_sets_have_the_same_numbers_tables_and_columns(
    tmp_path: Path, database_url: str, open_database: OpenDatabase
) -> None:
    sqlite_set = [(version, name) for version, name, _ in available_migrations("sqlite")]
    postgres_set = [(version, name) for version, name, _ in available_migrations("postgresql")]
    assert sqlite_set == postgres_set
    sqlite_db = await Database.open(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        await sqlite_db.migrate()
    finally:
        await sqlite_db.close()
    await open_database()  # the PostgreSQL one, migrated
    assert _postgres_columns(database_url) == _sqlite_columns(tmp_path / "schema.db")


async def test_a_fresh_database_migrates_and_a_newer_schema_is_refused(
    database_engine: str, database_urls: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    if database_engine == "postgresql":
        url = request.getfixturevalue("postgres_server").fresh_database(migrated=False)
    else:
        url = database_urls("fresh.db")
    db = await Database.open(url)
    try:
        newest = available_migrations(db.dialect)[-1][0]
        assert await db.migrate() == newest
        assert await db.migrate() == newest  # applied once
        await db.write(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (newest + 1, "from_the_future", "2027-01-01T00:00:00Z"),
        )
        with pytest.raises(DatabaseError, match=f"schema version {newest + 1}, newer than"):
            await db.migrate()
    finally:
        await db.close()


async def test_rows_read_by_name_and_by_position(db: Database) -> None:
    await db.write("INSERT INTO meta (key, value) VALUES (?, ?)", ("colour", "blue"))
    row = await db.fetchone("SELECT key, value FROM meta WHERE key = ?", ("colour",))
    assert row is not None
    assert (row["key"], row["value"], row[0], row[1], tuple(row)) == (
        "colour", "blue", "colour", "blue", ("colour", "blue"),
    )  # fmt: skip
    assert dict(zip(row.keys(), row, strict=True)) == {"key": "colour", "value": "blue"}


async def test_text_with_a_nul_character_is_stored_and_found_again(db: Database) -> None:
    """PostgreSQL text cannot hold NUL: it is stored as U+FFFD there, and the same text finds
    it again (a hostile session id or comment body is an ordinary value, never a 500)."""
    await db.write("INSERT INTO meta (key, value) VALUES (?, ?)", ("k\x00ey", "va\x00lue"))
    value = await db.fetchval("SELECT value FROM meta WHERE key = ?", ("k\x00ey",))
    assert value in ("va\x00lue", "va\ufffdlue")  # SQLite keeps the NUL


async def test_an_empty_list_of_streams_or_types_reads_nothing(db: Database) -> None:
    """`IN ()` is SQLite's alone: PostgreSQL refuses it (the fuzzer's empty subscribe found it)."""
    await db.write("INSERT INTO events (stream, type, ts, data) VALUES ('s', 'x', 't', '{}')")
    assert await event_store.read_since(db, 0, streams=[]) == []
    assert await event_store.read_types_between(db, 0, 10, []) == []
    assert len(await event_store.read_since(db, 0, streams=["s"])) == 1


async def test_post_commit_callbacks_run_in_commit_order(db: Database) -> None:
    """What the event bus relies on: ids handed to the callbacks only ever grow."""
    seen: list[int] = []

    async def publish(n: int) -> None:
        await db.write(
            "INSERT INTO events (stream, type, ts, data) VALUES (?, 'x', 't', '{}') RETURNING id",
            (f"s{n % 7}",),
            after_commit=lambda result: seen.append(int(result.rows[0][0])),
        )

    await asyncio.gather(*(publish(n) for n in range(300)))
    assert len(seen) == 300 and seen == sorted(seen)


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_a_read_whose_connection_was_lost_is_retried(
    database_url: str, open_database: OpenDatabase
) -> None:
    db = await open_database(pool_size=2)
    await db.write("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    assert await db.fetchval("SELECT value FROM meta WHERE key = 'k'") == "v"
    _terminate_backends(database_url)  # the pool's idle connections die under it
    assert await db.fetchval("SELECT value FROM meta WHERE key = 'k'") == "v"


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_a_write_whose_connection_was_lost_before_its_commit_runs_once_on_a_new_one(
    database_url: str, open_database: OpenDatabase
) -> None:
    db = await open_database()
    await db.write("INSERT INTO meta (key, value) VALUES ('before', '1')")
    _terminate_backends(database_url)  # the writer's connection dies while idle
    await db.write("INSERT INTO meta (key, value) VALUES ('after', '1')")
    keys = [row[0] for row in await db.fetchall("SELECT key FROM meta ORDER BY key")]
    assert keys == ["after", "before"]


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_a_write_whose_connection_was_lost_during_its_commit_fails_and_is_not_retried(
    database_url: str, open_database: OpenDatabase
) -> None:
    """The server ends the connection inside COMMIT (a deferred trigger terminates its own
    backend): whether it committed is unknown to the client, so it must not run it again."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            """
            CREATE TABLE trap (n BIGINT);
            CREATE FUNCTION spring() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON trap
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION spring();
            """
        )
    db = await open_database()
    with pytest.raises(DatabaseUnavailable):
        await db.write("INSERT INTO trap (n) VALUES (1)")
    await db.write("INSERT INTO meta (key, value) VALUES ('after', '1')")  # reconnected
    assert await db.fetchval("SELECT value FROM meta WHERE key = 'after'") == "1"
    assert await db.fetchval("SELECT COUNT(*) FROM trap") == 0


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_a_statement_over_the_timeout_is_cancelled_not_retried(
    open_database: OpenDatabase,
) -> None:
    db = await open_database(statement_timeout_s=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        await db.fetchval("SELECT pg_sleep(5)")
    assert asyncio.get_running_loop().time() - started < 4  # once, not three times


@pytest.mark.parametrize("database_engine", ["postgresql"], indirect=True)
async def test_the_password_reaches_no_log_nor_error(
    postgres_server: PostgresServer,
    database_url: str,
    open_database: OpenDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    db = await open_database()
    await db.write("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    assert "***" in repr(db) and PASSWORD not in repr(db)
    wrong = database_url.replace(PASSWORD, "not-the-password-9f3a")
    with pytest.raises(DatabaseError) as refused:
        await PostgresDatabase.connect_to(wrong)
    assert "not-the-password" not in str(refused.value)
    assert re.search(r"biagent:\*\*\*@127\.0\.0\.1", str(refused.value))
    assert PASSWORD not in caplog.text and "not-the-password" not in caplog.text
    assert PASSWORD not in postgres_server.log_text()


def _terminate_backends(url: str) -> None:
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
