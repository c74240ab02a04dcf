"""The storage API: one `Database` whichever engine is behind it, chosen by DATABASE_URL.

`Database.open(url)` gives a SQLite database (storage/sqlite.py, the default) or a PostgreSQL
one (storage/postgres.py) with the same public methods: reads (`fetchall`, `fetchone`,
`fetchval`), writes committed by group commit (`write`, `write_many`, with post-commit callbacks
run in commit order, which the event bus relies on for id order), `transaction()` for a
read-modify-write, `migrate()` and `close()`. The aggregate modules beside this one write
portable SQL with `?` placeholders; the few dialect differences are in storage/dialect.py.
"""

from __future__ import annotations

import abc
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from storage.group_commit import GroupCommit

Params = Sequence[Any] | dict[str, Any]
# A row reads as `row["column"]` and as `row[0]`, like sqlite3.Row (storage/dialect.Row on
# PostgreSQL); typed loosely, as sqlite3.Row's items are.
Row = Any
T = TypeVar("T")

SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseClosed(RuntimeError):
    """The database was used before `open()` or after `close()`."""


class MissingRow(LookupError):
    """A row the code just wrote or was promised is not there."""


class DatabaseError(Exception):
    """A database could not be opened or migrated."""


class DatabaseUnavailable(DatabaseError):
    """The connection to the database server was lost during a write: whether it committed
    is unknown, so it is not retried; the next write reconnects."""


def found(row: T | None, what: str) -> T:
    """`row`, which the caller knows exists (it was just written); a clear error otherwise."""
    if row is None:
        raise MissingRow(f"{what} is not in the database")
    return row


@dataclass(frozen=True, slots=True)
class WriteResult:
    lastrowid: int | None  # SQLite only: portable code asks for `RETURNING id` instead
    rowcount: int
    rows: tuple[Row, ...] = ()  # what a statement with RETURNING gave back


def inserted_id(result: WriteResult, what: str = "the new row") -> int:
    """The id an `INSERT ... RETURNING id` gave back (portable, unlike a cursor's lastrowid)."""
    return int(found(result.rows[0] if result.rows else None, f"{what}'s id")[0])


class Transaction(abc.ABC):
    """The writer inside `Database.transaction()`: statements run in one transaction."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> WriteResult: ...

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class Database(abc.ABC):
    """A migrated database opened for the service; `open()` picks the engine from the URL."""

    dialect: str  # "sqlite" or "postgresql": which migrations it runs
    # Whether other processes may write to it (instances sharing a PostgreSQL database): the
    # event bus then follows the log (`listen`) instead of trusting its own commits alone.
    shared: bool = False
    _group_commit: GroupCommit

    @classmethod
    async def open(cls, url: str, **options: Any) -> Database:
        """Open the database `url` names. Options: `synchronous`, `checkpoint_every_s`
        (SQLite); `pool_size`, `statement_timeout_s` (PostgreSQL); the other engine's are
        ignored, so a caller passes the settings of both."""
        if is_postgres_url(url):
            from storage.postgres import PostgresDatabase

            return await PostgresDatabase.connect_to(url, **options)
        from storage.sqlite import SqliteDatabase

        return await SqliteDatabase.connect_to(url, **options)

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

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
        """Run statements atomically (all or none); returns once they are committed, by the
        driver's group commit (storage/group_commit.py)."""
        self._check_open()
        return await self._group_commit.submit(list(statements), after_commit)

    @abc.abstractmethod
    def _check_open(self) -> None:
        """Raise DatabaseClosed unless the database is open."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """Exclusive use of the writer for a read-modify-write; commits on success."""

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Apply every numbered migration not applied yet; returns the schema version."""

    def listen(self, channel: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[str]]:
        """The payloads of the notices other processes send on `channel` as they commit (a
        shared database only: PostgreSQL's LISTEN)."""
        raise NotImplementedError(f"a {self.dialect} database has no other process to hear")

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Whether this process may run the job `name` now, held until the block ends: True
        unless another process sharing the database holds it. A SQLite file has one process;
        PostgreSQL answers with an advisory lock (instances sharing one database)."""
        yield True


def driver_errors() -> tuple[type[Exception], ...]:
    """What either driver raises when the database cannot answer (for /readyz and the like)."""
    import sqlite3

    import psycopg

    return (sqlite3.Error, psycopg.Error, DatabaseError)


def is_postgres_url(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def sqlite_path_from_url(url: str) -> str:
    """`sqlite:///biagent.db` -> `biagent.db`; `sqlite:////abs/x.db` -> `/abs/x.db`."""
    match = re.fullmatch(r"sqlite:///(.+)", url)
    if match is None:
        raise DatabaseError(
            "DATABASE_URL must look like sqlite:///path/to/file.db"
            f" (got a {url.split(':', 1)[0]} URL)"
        )
    return match.group(1)


def database_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for a database server."""
    return None if is_postgres_url(url) else Path(sqlite_path_from_url(url))


def redacted_url(url: str) -> str:
    """The URL with any password replaced by `***`, for logs and start-up lines."""
    return re.sub(r"^(\w+://[^:/@]*):[^@]*@", r"\1:***@", url)


def available_migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """The numbered `NNNN_name.sql` files shipped for `dialect`, in order: storage/migrations
    for SQLite, storage/migrations/postgresql for PostgreSQL (the same numbers and tables)."""
    package = "storage.migrations" if dialect == "sqlite" else f"storage.migrations.{dialect}"
    shipped = []
    for entry in resources.files(package).iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            shipped.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    versions = [version for version, _, _ in shipped]
    if len(versions) != len(set(versions)):
        raise DatabaseError("two migrations share a number")
    return sorted(shipped)


def check_schema_version(applied: set[int], shipped: list[tuple[int, str, str]]) -> None:
    """A database migrated by newer code than this one is refused with a clear error: this
    code would misread tables it does not know."""
    newest_known = max((version for version, _, _ in shipped), default=0)
    unknown = sorted(version for version in applied if version > newest_known)
    if unknown:
        raise DatabaseError(
            f"the database is at schema version {unknown[-1]}, newer than this code's"
            f" {newest_known}: run the newer biagent, or restore a backup made for this one"
        )
