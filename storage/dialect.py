"""The PostgreSQL dialect adapter: the few differences the portable SQL cannot avoid.

The aggregate modules write SQL that both engines run as it is (`ON CONFLICT ... DO NOTHING`
or `DO UPDATE`, `RETURNING id` instead of a cursor's lastrowid, timestamps computed in Python
from the injected clock). What is left is translated here, once per statement text (cached):

- `?` placeholders become psycopg's `%s`, and a literal `%` becomes `%%` (psycopg reads `%`
  as the start of a placeholder); a `?` inside a quoted string or identifier stays.
- `last_insert_rowid()` becomes `lastval()`: the id the same connection's previous INSERT
  drew from its identity column (storage/events.py's KEEP_KEY is the one use).
- A claim's row lock (`skip_locked`): `FOR UPDATE SKIP LOCKED` on PostgreSQL, so instances
  claiming at once each take other rows; nothing on SQLite, whose one writer serialises claims.

A transaction that inserts events takes EVENTS_LOCK first (`inserts_events`, the driver's
rule): id assignment and commit are then serialised across instances, so commit order is id
order and a reader following the log by id never skips an event that committed late.

Rows read back support `row["column"]` and `row[0]`, as sqlite3.Row does.
docs/database.md lists the dialect rules the modules follow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

_FUNCTIONS = {"last_insert_rowid()": "lastval()"}
_SKIP_LOCKED = {"postgresql": " FOR UPDATE SKIP LOCKED", "sqlite": ""}


_ROW_LOCK = {"postgresql": " FOR UPDATE", "sqlite": ""}


def row_lock(dialect: str) -> str:
    """What ends a SELECT whose row stands for a read-modify-write that instances must take in
    turn (PostgreSQL's row lock, held to COMMIT); nothing on SQLite, whose one writer does."""
    return _ROW_LOCK[dialect]


def skip_locked(dialect: str) -> str:
    """What ends a claim's inner SELECT: the rows it picks locked, and rows another
    transaction holds skipped (storage/claims.py)."""
    return _SKIP_LOCKED[dialect]


_EVENT_INSERT = re.compile(r"\s*INSERT\s+INTO\s+events\b", re.IGNORECASE)

# pg_advisory_xact_lock key of the event log (b"bia-evnt"): held from before a transaction's
# first event id is drawn until it commits (docs/database.md, Events across instances).
EVENTS_LOCK = int.from_bytes(b"bia-evnt", "big", signed=True)
LOCK_EVENTS = "SELECT pg_advisory_xact_lock(%s)"


@functools.lru_cache(maxsize=4096)
def inserts_events(sql: str) -> bool:
    """Whether `sql` adds rows to the event log (storage/events.py's INSERT_EVENT*)."""
    return _EVENT_INSERT.match(sql) is not None


@functools.lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """`sql` written with SQLite's `?` placeholders, in psycopg's form."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    translated = "".join(out)
    for sqlite_form, postgres_form in _FUNCTIONS.items():
        translated = translated.replace(sqlite_form, postgres_form)
    return translated


class Row(tuple[Any, ...]):
    """A row as a tuple that also answers `row["column"]` and `keys()` (sqlite3.Row's API)."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)
    return type("Row", (Row,), {"__slots__": (), "_index": index})


def row_maker(names: Sequence[str]) -> Callable[[Sequence[Any]], Row]:
    """Builds rows for a result whose columns are `names` (the first of a repeated name wins,
    as with sqlite3.Row)."""
    row_class = _row_class(tuple(names))
    return row_class
