"""Shutdown never hangs on a background task: cancelled and awaited, bounded, logged."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.tasks import stop_tasks


async def test_a_task_that_stops_on_cancel_is_awaited() -> None:
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(waits())
    await started.wait()
    await stop_tasks([task])
    assert task.cancelled()


async def test_a_task_that_ignores_its_cancel_is_left_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.create_task(stubborn(), name="stubborn")
    await started.wait()
    await stop_tasks([task], grace_s=0.05)
    assert not task.done()
    assert "stubborn did not stop within 0s of its cancel" in caplog.text
    assert "in stubborn" in caplog.text  # where it hangs
    release.set()
    await task


async def test_an_error_a_task_ends_with_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("broken at shutdown")

    task = asyncio.create_task(fails(), name="failing")
    await asyncio.sleep(0)
    await stop_tasks([task])
    assert task.done() and "failing ended with an error" in caplog.text
    raiser = asyncio.create_task(_raise_on_cancel(), name="raiser")
    await asyncio.sleep(0)  # it waits before it is cancelled
    await stop_tasks([raiser])
    assert "raiser ended with an error" in caplog.text


async def _raise_on_cancel() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise RuntimeError("cleanup failed") from None
