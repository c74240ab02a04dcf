"""The SQLite driver: one aiosqlite writer with group commit, one reader, numbered migrations.

Everything that touches SQLite-specific behaviour (PRAGMAs, the URL scheme, the migration
bookkeeping) lives here, so the aggregate modules stay portable SQL with `?` placeholders.
`Database.open` (storage/database.py) picks this driver for a `sqlite:///` URL.

Writes go through `write()` (one statement) or `write_many()` (several, atomic). Concurrent
writers are gathered into one transaction and one commit (group commit): a caller's future
resolves only after the commit that holds its statement, so "stored before the 202" means
committed. A post-commit callback runs in commit order, which is what lets the event bus fan
events out strictly in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from storage.database import (
    Database,
    DatabaseClosed,
    DatabaseError,
    Params,
    Row,
    Transaction,
    WriteResult,
    available_migrations,
    check_schema_version,
    sqlite_path_from_url,
)
from storage.group_commit import GroupCommit, Groups, Outcomes

log = logging.getLogger(__name__)

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 5000
CHECKPOINT_EVERY_S = 0.5


def _opened(connection: aiosqlite.Connection | None) -> aiosqlite.Connection:
    if connection is None:
        raise DatabaseClosed("the database is not open")
    return connection


def _commit_groups(connection: sqlite3.Connection, groups: Groups) -> Outcomes:
    """In the writer's thread: every group's statements in one transaction, then COMMIT.

    On any error the whole transaction is rolled back and the error raised.
    """
    outcomes: Outcomes = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statements in groups:
            results = []
            for sql, params in statements:
                cursor = connection.execute(sql, params)
                rows = tuple(cursor.fetchall()) if cursor.description else ()
                results.append(WriteResult(cursor.lastrowid, cursor.rowcount, rows))
            outcomes.append(results)
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    return outcomes


class SqliteTransaction(Transaction):
    """The writer connection inside `transaction()` (storage.database.Transaction)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Params = ()) -> WriteResult:
        async with self._connection.execute(sql, params) as cursor:
            rows = tuple(await cursor.fetchall()) if cursor.description else ()
            return WriteResult(cursor.lastrowid, cursor.rowcount, rows)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._connection.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._connection.execute_fetchall(sql, params))


class SqliteDatabase(Database):
    """A SQLite database opened for the service: WAL, foreign keys, busy timeout."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.checkpoint_every_s = checkpoint_every_s
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._group_commit = GroupCommit(self._in_writer_thread, self._write_lock)
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect_to(
        cls,
        url: str,
        *,
        synchronous: str = "NORMAL",
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        **_server_options: Any,
    ) -> SqliteDatabase:
        database = cls(
            sqlite_path_from_url(url),
            synchronous=synchronous,
            checkpoint_every_s=checkpoint_every_s,
        )
        await database.connect()
        return database

    async def connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect_one()
        self._reader = await self._connect_one()
        await self._reader.execute("PRAGMA query_only=ON")
        # Checkpoints copy the WAL into the database file. Left to the writer, one commit in a
        # few hundred pays for the copy while its callers wait for their 202s; a connection of
        # its own does it in its own thread, beside the commits.
        await self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = await self._connect_one()
        self._checkpoint_task = asyncio.create_task(self._run_checkpoints(), name="db-checkpoint")
        self._group_commit.start()

    async def _connect_one(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        connection.row_factory = sqlite3.Row
        await connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute(f"PRAGMA synchronous={self.synchronous}")
        await connection.execute("PRAGMA foreign_keys=ON")
        return connection

    async def checkpoint(self) -> None:
        """Copy committed WAL pages into the database file, without blocking anyone."""
        await _opened(self._checkpointer).execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _run_checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_every_s)
            try:
                await self.checkpoint()
            except sqlite3.Error as error:
                log.warning("WAL checkpoint failed: %s", error)

    async def close(self) -> None:
        await self._group_commit.stop()
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
            self._checkpoint_task = None
        for connection in (self._writer, self._reader, self._checkpointer):
            if connection is not None:
                await connection.close()
        self._writer = self._reader = self._checkpointer = None

    # -- reads ---------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query and fetch every row in one hop to the reader's thread.

        Executing and fetching in separate hops would let another coroutine's query run while
        this statement is still open, inside the same implicit read transaction, and so see a
        snapshot older than writes already committed (a delivery claimed but "not there").
        """
        return list(await _opened(self._reader).execute_fetchall(sql, params))

    # -- writes --------------------------------------------------------------------------

    def _check_open(self) -> None:
        _opened(self._writer)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """Exclusive use of the writer for a read-modify-write; commits on success."""
        writer = _opened(self._writer)
        async with self._write_lock:
            await writer.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(writer)
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
            await writer.execute("COMMIT")

    async def _in_writer_thread(self, groups: Groups) -> Outcomes:
        """Commit `groups` in the writer connection's own thread, in one round trip.

        Done statement by statement through aiosqlite, a group commit costs one hand-off
        between the event loop and the writer thread per statement, and under load each
        hand-off waits for a turn of a busy loop, so the batch crawls (bench/webhooks.py
        measured it). aiosqlite has no public call for "run this function in your thread";
        `_execute` is the one internal all its public calls are built on.
        """
        writer = _opened(self._writer)
        outcomes: Outcomes = await writer._execute(_commit_groups, writer._conn, groups)
        return outcomes

    # -- migrations ----------------------------------------------------------------------

    async def migrate(self) -> int:
        """Apply every numbered migration not applied yet; returns the schema version."""
        writer = _opened(self._writer)
        shipped = available_migrations(self.dialect)
        async with self._write_lock:
            await writer.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            async with writer.execute("SELECT version FROM schema_migrations") as cursor:
                applied = {row[0] for row in await cursor.fetchall()}
            check_schema_version(applied, shipped)
            for version, name, sql in shipped:
                if version not in applied:
                    await self._apply(writer, version, name, sql)
            async with writer.execute("SELECT MAX(version) FROM schema_migrations") as cur:
                row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    @staticmethod
    async def _apply(writer: aiosqlite.Connection, version: int, name: str, sql: str) -> None:
        log.info("applying migration %04d_%s", version, name)
        try:
            await writer.executescript(
                "BEGIN IMMEDIATE;\n"
                + sql
                + "\nINSERT INTO schema_migrations (version, name, applied_at)"
                + f" VALUES ({version}, '{name}', strftime('%Y-%m-%dT%H:%M:%fZ','now'));"
                + "\nCOMMIT;"
            )
        except sqlite3.Error as error:
            with contextlib.suppress(Exception):
                await writer.execute("ROLLBACK")
            raise DatabaseError(f"migration {version:04d}_{name} failed: {error}") from error
