"""The driver: one aiosqlite writer with group commit, one reader, numbered migrations.

Everything that touches SQLite-specific behaviour (PRAGMAs, the URL scheme, the migration
bookkeeping) lives here, so the aggregate modules beside it stay portable SQL with `?`
placeholders.

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
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 256
CHECKPOINT_EVERY_S = 0.5


T = TypeVar("T")


class DatabaseClosed(RuntimeError):
    """The database was used before `open()` or after `close()`."""


class MissingRow(LookupError):
    """A row the code just wrote or was promised is not there."""


def found(row: T | None, what: str) -> T:
    """`row`, which the caller knows exists (it was just written); a clear error otherwise."""
    if row is None:
        raise MissingRow(f"{what} is not in the database")
    return row


def _opened(connection: aiosqlite.Connection | None) -> aiosqlite.Connection:
    if connection is None:
        raise DatabaseClosed("the database is not open")
    return connection


class DatabaseError(Exception):
    """A database could not be opened or migrated."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    lastrowid: int | None
    rowcount: int
    rows: tuple[sqlite3.Row, ...] = ()  # what a statement with RETURNING gave back


@dataclass(slots=True)
class _PendingWrite:
    statements: list[tuple[str, Params]]
    future: asyncio.Future[list[WriteResult]]
    after_commit: Callable[[list[WriteResult]], None] | None = None


@dataclass(slots=True)
class _WriterState:
    queue: asyncio.Queue[_PendingWrite] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


_Groups = list[list[tuple[str, Params]]]
_Outcomes = list[list[WriteResult]]


def _commit_groups(connection: sqlite3.Connection, groups: _Groups) -> _Outcomes:
    """In the writer's thread: every group's statements in one transaction, then COMMIT.

    On any error the whole transaction is rolled back and the error raised.
    """
    outcomes: _Outcomes = []
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


def sqlite_path_from_url(url: str) -> str:
    """`sqlite:///biagent.db` -> `biagent.db`; `sqlite:////abs/x.db` -> `/abs/x.db`."""
    match = re.fullmatch(r"sqlite:///(.+)", url)
    if match is None:
        raise DatabaseError(
            "DATABASE_URL must look like sqlite:///path/to/file.db"
            f" (got a {url.split(':', 1)[0]} URL)"
        )
    return match.group(1)


class Database:
    """A SQLite database opened for the service: WAL, foreign keys, busy timeout."""

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
        self._state = _WriterState()
        self._write_lock = asyncio.Lock()
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        synchronous: str = "NORMAL",
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> Database:
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
        self._state.task = asyncio.create_task(self._run_writer(), name="db-group-commit")

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
        if self._state.task is not None:
            self._state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._state.task
            self._state.task = None
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
            self._checkpoint_task = None
        while not self._state.queue.empty():
            pending = self._state.queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(DatabaseError("database closed before the write"))
        for connection in (self._writer, self._reader, self._checkpointer):
            if connection is not None:
                await connection.close()
        self._writer = self._reader = self._checkpointer = None

    # -- reads ---------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run a query and fetch every row in one hop to the reader's thread.

        Executing and fetching in separate hops would let another coroutine's query run while
        this statement is still open, inside the same implicit read transaction, and so see a
        snapshot older than writes already committed (a delivery claimed but "not there").
        """
        return list(await _opened(self._reader).execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    # -- writes --------------------------------------------------------------------------

    async def write(
        self,
        sql: str,
        params: Params = (),
        *,
        after_commit: Callable[[WriteResult], None] | None = None,
    ) -> WriteResult:
        """Run one statement; returns once it is committed (group commit)."""

        def after(results: list[WriteResult]) -> None:
            if after_commit is not None:
                after_commit(results[0])

        results = await self.write_many([(sql, params)], after_commit=after)
        return results[0]

    async def write_many(
        self,
        statements: Iterable[tuple[str, Params]],
        *,
        after_commit: Callable[[list[WriteResult]], None] | None = None,
    ) -> list[WriteResult]:
        """Run statements atomically (all or none); returns once they are committed."""
        future: asyncio.Future[list[WriteResult]] = asyncio.get_running_loop().create_future()
        self._state.queue.put_nowait(_PendingWrite(list(statements), future, after_commit))
        return await future

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the writer for a read-modify-write; commits on success."""
        writer = _opened(self._writer)
        async with self._write_lock:
            await writer.execute("BEGIN IMMEDIATE")
            try:
                yield writer
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
            await writer.execute("COMMIT")

    async def _run_writer(self) -> None:
        queue = self._state.queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < MAX_BATCH:
                batch.append(queue.get_nowait())
            async with self._write_lock:
                await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[_PendingWrite]) -> None:
        try:
            outcomes = await self._in_writer_thread([item.statements for item in batch])
        except Exception:
            # One statement failed (or the commit did): the group was rolled back; retry
            # each write alone, so only the faulty caller sees the error.
            if len(batch) == 1:
                await self._commit_alone(batch[0])
                return
            for item in batch:
                await self._commit_alone(item)
            return
        for item, results in zip(batch, outcomes, strict=True):
            self._resolve(item, results)

    async def _commit_alone(self, item: _PendingWrite) -> None:
        try:
            (results,) = await self._in_writer_thread([item.statements])
        except Exception as error:
            if not item.future.done():
                item.future.set_exception(error)
            return
        self._resolve(item, results)

    async def _in_writer_thread(self, groups: _Groups) -> _Outcomes:
        """Commit `groups` in the writer connection's own thread, in one round trip.

        Done statement by statement through aiosqlite, a group commit costs one hand-off
        between the event loop and the writer thread per statement, and under load each
        hand-off waits for a turn of a busy loop, so the batch crawls (bench/webhooks.py
        measured it). aiosqlite has no public call for "run this function in your thread";
        `_execute` is the one internal all its public calls are built on.
        """
        writer = _opened(self._writer)
        outcomes: _Outcomes = await writer._execute(_commit_groups, writer._conn, groups)
        return outcomes

    @staticmethod
    def _resolve(item: _PendingWrite, results: list[WriteResult]) -> None:
        if item.after_commit is not None:
            try:
                item.after_commit(results)
            except Exception:
                log.exception("post-commit callback failed")
        if not item.future.done():
            item.future.set_result(results)

    # -- migrations ----------------------------------------------------------------------

    async def migrate(self) -> int:
        """Apply every numbered migration not applied yet; returns the schema version."""
        writer = _opened(self._writer)
        async with self._write_lock:
            await writer.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            async with writer.execute("SELECT version FROM schema_migrations") as cursor:
                applied = {row[0] for row in await cursor.fetchall()}
            for version, name, sql in available_migrations():
                if version in applied:
                    continue
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
                    raise DatabaseError(
                        f"migration {version:04d}_{name} failed: {error}"
                    ) from error
            async with writer.execute("SELECT MAX(version) FROM schema_migrations") as cur:
                row = await cur.fetchone()
        return int(row[0] or 0) if row else 0


def available_migrations() -> list[tuple[int, str, str]]:
    """The numbered `NNNN_name.sql` files shipped in storage/migrations, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    versions = [version for version, _, _ in found]
    if len(versions) != len(set(versions)):
        raise DatabaseError("two migrations share a number")
    return sorted(found)
