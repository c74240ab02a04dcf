"""Group commit, shared by both drivers (storage/sqlite.py, storage/postgres.py).

Concurrent `write_many` calls queue here; one task takes whatever is queued (up to MAX_BATCH),
hands it to the driver's `commit` to run in one transaction, and resolves each caller's future
after that commit, running its post-commit callback first, in commit order: the event bus fans
events out from those callbacks, so clients see ids in order. If the group fails, each write is
retried alone, so only the faulty caller sees the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage.database import DatabaseError, DatabaseUnavailable, Params, WriteResult

log = logging.getLogger(__name__)

MAX_BATCH = 256

Groups = list[list[tuple[str, Params]]]
Outcomes = list[list[WriteResult]]
AfterCommit = Callable[[list[WriteResult]], None]


@dataclass(slots=True)
class _PendingWrite:
    statements: list[tuple[str, Params]]
    future: asyncio.Future[list[WriteResult]]
    after_commit: AfterCommit | None = None


class GroupCommit:
    """The writer's queue and its one committing task."""

    def __init__(
        self,
        commit: Callable[[Groups], Awaitable[Outcomes]],
        lock: asyncio.Lock,
        *,
        name: str = "db-group-commit",
    ) -> None:
        self._commit = commit  # every group's statements in one transaction, or raises
        self._lock = lock  # held while committing; transaction() and migrate() take it too
        self._name = name
        self._queue: asyncio.Queue[_PendingWrite] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop committing; writes still queued fail with DatabaseError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(DatabaseError("database closed before the write"))

    async def submit(
        self, statements: list[tuple[str, Params]], after_commit: AfterCommit | None
    ) -> list[WriteResult]:
        future: asyncio.Future[list[WriteResult]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_PendingWrite(statements, future, after_commit))
        return await future

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < MAX_BATCH:
                batch.append(queue.get_nowait())
            async with self._lock:
                await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[_PendingWrite]) -> None:
        try:
            outcomes = await self._commit([item.statements for item in batch])
        except DatabaseUnavailable as error:
            # The connection was lost: the group may or may not have committed, so retrying
            # could store a write twice. Every caller learns it failed.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        except Exception:
            # One statement failed (or the commit did): the group was rolled back; retry
            # each write alone, so only the faulty caller sees the error.
            for item in batch:
                await self._commit_alone(item)
            return
        for item, results in zip(batch, outcomes, strict=True):
            self._resolve(item, results)

    async def _commit_alone(self, item: _PendingWrite) -> None:
        try:
            (results,) = await self._commit([item.statements])
        except Exception as error:
            if not item.future.done():
                item.future.set_exception(error)
            return
        self._resolve(item, results)

    @staticmethod
    def _resolve(item: _PendingWrite, results: list[WriteResult]) -> None:
        if item.after_commit is not None:
            try:
                item.after_commit(results)
            except Exception:
                log.exception("post-commit callback failed")
        if not item.future.done():
            item.future.set_result(results)
