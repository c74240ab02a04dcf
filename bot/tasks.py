"""Stopping background tasks at shutdown, bounded: a task that ignores its cancellation is
logged with where it hangs, and left behind, so the rest of the shutdown still runs."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 15.0


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, grace_s: float = SHUTDOWN_GRACE_S
) -> None:
    """Cancel the tasks and wait for them, at most `grace_s` (real time: this is shutdown,
    not behaviour a test drives); errors they end with are logged, never raised."""
    chosen = list(tasks)
    pending = {task for task in chosen if not task.done()}
    for task in pending:
        task.cancel()
    stuck: set[asyncio.Task[Any]] = set()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=grace_s)
    for task in chosen:
        if task in stuck or task.cancelled():
            continue
        error = task.exception()
        if error is not None:
            log.error("%s ended with an error", task.get_name(), exc_info=error)
    for task in stuck:
        where = io.StringIO()
        task.print_stack(file=where)
        log.error(
            "%s did not stop within %.0fs of its cancel; left behind at:\n%s",
            task.get_name(),
            grace_s,
            where.getvalue(),
        )
