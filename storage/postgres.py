"""The PostgreSQL driver (psycopg 3, async): the same storage API and design as storage/sqlite.py.

`Database.open` picks it for a `postgresql://` or `postgres://` URL. One writer connection
does the group commits in this process (storage/group_commit.py), so post-commit callbacks
still run in commit order; reads go to a bounded pool of autocommit connections, so each read
sees every commit before it. Every connection has a statement timeout. A read that fails
because its connection was lost is retried (reads are idempotent); a group of writes whose
connection was lost before its COMMIT is run again on a new connection (nothing of it was
committed); one lost during the COMMIT is not (it may have committed): its callers get
DatabaseUnavailable.

psycopg rather than asyncpg: psycopg sends str parameters untyped and lets PostgreSQL infer the
column's type, as SQLite does, so the same SQL text runs on both; asyncpg types each parameter
from the prepared statement and refuses an int where a text column is compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql as pg_sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from storage.database import (
    Database,
    DatabaseClosed,
    DatabaseError,
    DatabaseUnavailable,
    Params,
    Row,
    T,
    Transaction,
    WriteResult,
    available_migrations,
    check_schema_version,
    redacted_url,
)
from storage.dialect import EVENTS_LOCK, LOCK_EVENTS, inserts_events, row_maker, to_postgres
from storage.group_commit import GroupCommit, Groups, Outcomes

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
DEFAULT_STATEMENT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
READ_ATTEMPTS = 3
MIGRATION_LOCK = 0x62696167  # pg_advisory_xact_lock key: one instance migrates at a time

Connection = psycopg.AsyncConnection[Row]


class _UntypedBool(Dumper):
    """Python bools go as untyped '1'/'0': PostgreSQL reads them as the integer the flag
    columns hold (0/1, as on SQLite) or as a boolean where the SQL wants one."""

    format = Format.TEXT
    oid = 0

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NulFreeText(Dumper):
    """Python str go untyped (PostgreSQL infers the column's type, as SQLite does), with any
    NUL character as U+FFFD: PostgreSQL text cannot hold NUL, and a hostile id or body holding
    one must be stored or looked up like any other text, not fail the statement."""

    format = Format.TEXT
    oid = 0

    def dump(self, obj: Any) -> bytes:
        return str(obj).replace("\x00", "\ufffd").encode("utf-8")


def _rows(cursor: psycopg.AsyncCursor[Any]) -> Callable[[Sequence[Any]], Row]:
    return row_maker([column.name for column in cursor.description or ()])


def _values(params: Params) -> Params:
    return params if isinstance(params, dict) else tuple(params)


def _transient(error: BaseException) -> bool:
    """A lost or refused connection, worth one more try for an idempotent read; not a
    statement timeout, nor a pool that stayed full."""
    return isinstance(error, psycopg.OperationalError) and not isinstance(
        error, psycopg.errors.QueryCanceled | psycopg_pool.PoolTimeout
    )


class _LostBeforeCommit(Exception):
    """The writer's connection was lost before its COMMIT was sent: nothing was committed."""


class PostgresTransaction(Transaction):
    """The writer connection inside `transaction()` (storage.database.Transaction)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Params = ()) -> WriteResult:
        if inserts_events(sql):
            await self._connection.execute(LOCK_EVENTS, (EVENTS_LOCK,))
        cursor = await self._connection.execute(to_postgres(sql), _values(params))
        rows = tuple(await cursor.fetchall()) if cursor.description else ()
        return WriteResult(None, cursor.rowcount, rows)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        if inserts_events(sql):
            await self._connection.execute(LOCK_EVENTS, (EVENTS_LOCK,))
        async with self._connection.cursor() as cursor:
            await cursor.executemany(to_postgres(sql), [_values(row) for row in rows])

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = await self._connection.execute(to_postgres(sql), _values(params))
        return await cursor.fetchall()


class PostgresDatabase(Database):
    """A PostgreSQL database opened for the service: one writer, a bounded reader pool."""

    dialect = "postgresql"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.statement_timeout_s = statement_timeout_s
        self._writer: Connection | None = None
        self._pool: psycopg_pool.AsyncConnectionPool[Connection] | None = None
        self._write_lock = asyncio.Lock()
        self._group_commit = GroupCommit(self._commit, self._write_lock)

    @classmethod
    async def connect_to(
        cls,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
        **_sqlite_options: Any,
    ) -> PostgresDatabase:
        database = cls(url, pool_size=pool_size, statement_timeout_s=statement_timeout_s)
        await database.connect()
        return database

    def __repr__(self) -> str:
        return f"PostgresDatabase({redacted_url(self.url)!r})"

    def _connection_options(self) -> dict[str, Any]:
        timeout_ms = max(1, round(self.statement_timeout_s * 1000))
        return {
            "autocommit": True,
            "row_factory": _rows,
            "options": f"-c statement_timeout={timeout_ms}",
            "connect_timeout": int(CONNECT_TIMEOUT_S),
        }

    async def _connect_one(self, **extra_options: Any) -> Connection:
        try:
            connection: Connection = await psycopg.AsyncConnection.connect(
                self.url, **self._connection_options(), **extra_options
            )
        except psycopg.Error as error:
            raise DatabaseError(
                f"cannot connect to {redacted_url(self.url)}: {_first_line(error)}"
            ) from None
        self._configure_types(connection)
        return connection

    @staticmethod
    def _configure_types(connection: Connection) -> None:
        connection.adapters.register_dumper(bool, _UntypedBool)
        connection.adapters.register_dumper(str, _NulFreeText)

    async def _configure(self, connection: Connection) -> None:
        self._configure_types(connection)

    async def connect(self) -> None:
        self._writer = await self._connect_one()
        self._pool = psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            kwargs=self._connection_options(),
            configure=self._configure,
            open=False,
            name="biagent-readers",
        )
        await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        self._group_commit.start()

    async def close(self) -> None:
        await self._group_commit.stop()
        if self._pool is not None:
            await self._pool.close()
        if self._writer is not None:
            await self._writer.close()
        self._writer = self._pool = None

    # -- reads ---------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Rows of a query on a pooled connection; a lost connection is retried."""
        pool = _opened(self._pool)
        query, values = to_postgres(sql), _values(params)
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(READ_ATTEMPTS),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with pool.connection() as connection:
                    cursor = await connection.execute(query, values)
                    rows: list[Row] = await cursor.fetchall()
        return rows

    # -- writes --------------------------------------------------------------------------

    def _check_open(self) -> None:
        _opened(self._writer)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """Exclusive use of the writer for a read-modify-write; commits on success."""
        async with self._write_lock:
            writer = await self._usable_writer()
            async with writer.transaction():
                yield PostgresTransaction(writer)

    async def _commit(self, groups: Groups) -> Outcomes:
        """Every group's statements in one transaction on the writer, then COMMIT.

        A connection lost before the COMMIT was sent committed nothing (the server drops an
        open transaction with its connection): the writer reconnects and the groups run once
        more. Lost during the COMMIT, the outcome is unknown: DatabaseUnavailable, no retry.
        """
        try:
            return await self._commit_once(groups)
        except _LostBeforeCommit as lost:
            log.warning("database writer connection lost, reconnecting: %s", lost)
            return await self._commit_once(groups)

    async def _commit_once(self, groups: Groups) -> Outcomes:
        """The statements go out in pipeline mode (psycopg's `pipeline()`): sent one after
        another without waiting for each answer, so a group of many writes costs about one
        round trip to the server rather than one per statement. A commit that inserts events
        takes the event log's lock first, before any row lock (storage/dialect.py)."""
        writer = await self._usable_writer()
        outcomes: Outcomes | None = None
        orders_events = any(inserts_events(sql) for group in groups for sql, _ in group)
        try:
            async with writer.transaction():
                async with writer.pipeline():
                    if orders_events:
                        await writer.execute(LOCK_EVENTS, (EVENTS_LOCK,))
                    cursors = [
                        [await _sent(writer, sql, params) for sql, params in statements]
                        for statements in groups
                    ]
                outcomes = [[await _result(cursor) for cursor in group] for group in cursors]
        except psycopg.OperationalError as error:
            if not writer.broken and not writer.closed:
                raise
            if outcomes is None:  # the COMMIT was never sent
                raise _LostBeforeCommit(_first_line(error)) from error
            log.warning("database connection lost during a COMMIT: %s", _first_line(error))
            raise DatabaseUnavailable("the database connection was lost") from error
        return outcomes

    async def _usable_writer(self) -> Connection:
        """The writer, reconnected first if its connection was lost."""
        writer = _opened(self._writer)
        if writer.broken or writer.closed:
            with contextlib.suppress(psycopg.Error):
                await writer.close()
            self._writer = writer = await self._connect_one()
        return writer

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """An advisory lock named `name`, tried on a pooled connection held for the block: False
        when another instance holds it. A lost connection releases it (the server's rule)."""
        key = advisory_key(name)
        async with _opened(self._pool).connection() as connection:
            cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            held = await cursor.fetchone()
            acquired = bool(held and held[0])
            try:
                yield acquired
            finally:
                if acquired and not connection.broken:
                    await connection.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """A connection of its own LISTENing on `channel`; yields the notices' payloads as
        they come. A lost connection raises DatabaseUnavailable from the iteration."""
        connection = await self._connect_one(application_name=f"biagent-listen-{channel}")
        try:
            await connection.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
            yield _payloads(connection)
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(f"LISTEN {channel}: {_first_line(error)}") from error
        finally:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    # -- migrations ----------------------------------------------------------------------

    async def migrate(self) -> int:
        """Apply every numbered migration not applied yet, in one transaction under an
        advisory lock (instances starting together wait for the first); returns the version."""
        shipped = available_migrations(self.dialect)
        async with self._write_lock:
            writer = await self._usable_writer()
            try:
                async with writer.transaction():
                    return await self._apply_missing(writer, shipped)
            except psycopg.Error as error:
                raise DatabaseError(f"migration failed: {_first_line(error)}") from error

    @staticmethod
    async def _apply_missing(writer: Connection, shipped: list[tuple[int, str, str]]) -> int:
        await writer.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await writer.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        cursor = await writer.execute("SELECT version FROM schema_migrations")
        applied = {int(row[0]) for row in await cursor.fetchall()}
        check_schema_version(applied, shipped)
        for version, name, sql in shipped:
            if version in applied:
                continue
            log.info("applying migration %04d_%s", version, name)
            await writer.execute(sql.encode("utf-8"))  # several statements: no parameters
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await writer.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, name, now),
            )
            applied.add(version)
        return max(applied, default=0)


async def _payloads(connection: Connection) -> AsyncIterator[str]:
    try:
        async for notice in connection.notifies():
            yield notice.payload
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(
            f"the listening connection was lost: {_first_line(error)}"
        ) from error


async def _sent(connection: Connection, sql: str, params: Params) -> psycopg.AsyncCursor[Row]:
    cursor = connection.cursor()
    await cursor.execute(to_postgres(sql), _values(params))
    return cursor


async def _result(cursor: psycopg.AsyncCursor[Row]) -> WriteResult:
    rows = tuple(await cursor.fetchall()) if cursor.description else ()
    return WriteResult(None, cursor.rowcount, rows)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL's advisory locks take a bigint)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"biagent").digest()
    return int.from_bytes(digest, "big", signed=True)


def _opened(resource: T | None) -> T:
    if resource is None:
        raise DatabaseClosed("the database is not open")
    return resource


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
