"""The one retry policy: waits on the injected clock, honours a service's asked wait, gives up."""

from __future__ import annotations

import asyncio

import pytest

from bot.clock import ManualClock
from bot.retry import RetryPolicy


class Flaky(Exception):
    def __init__(self, asked_s: float | None = None) -> None:
        super().__init__("flaky")
        self.asked_s = asked_s


class RecordingClock(ManualClock):
    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=1.0, cap_s=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_wait_the_service_asked_for_wins_but_is_capped() -> None:
    policy = RetryPolicy(cap_s=60.0)
    assert policy.delay(1, asked_s=30.0) == 30.0
    assert policy.delay(1, asked_s=3600.0) == 60.0


async def test_a_call_that_fails_twice_succeeds_on_the_third_attempt() -> None:
    clock = RecordingClock()
    failures = [Flaky(), Flaky(asked_s=7.0)]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    result = await RetryPolicy(base_s=2.0).call(
        call,
        clock=clock,
        retry_on=lambda error: isinstance(error, Flaky),
        asked_wait=lambda error: getattr(error, "asked_s", None),
    )
    assert result == "ok"
    assert clock.slept == [2.0, 7.0]


async def test_the_last_error_goes_up_after_max_attempts() -> None:
    clock = RecordingClock()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Flaky()

    with pytest.raises(Flaky):
        await RetryPolicy(max_attempts=3).call(
            call, clock=clock, retry_on=lambda error: isinstance(error, Flaky)
        )
    assert calls == 3
    assert len(clock.slept) == 2


async def test_an_error_not_worth_retrying_goes_up_at_once() -> None:
    clock = RecordingClock()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not transient")

    with pytest.raises(KeyError):
        await RetryPolicy().call(call, clock=clock, retry_on=lambda error: isinstance(error, Flaky))
    assert calls == 1
    assert clock.slept == []


async def test_a_callable_returning_a_future_is_awaited_and_retried() -> None:
    clock = RecordingClock()
    loop = asyncio.get_running_loop()
    answers = iter([Flaky(), "ok"])

    def call() -> asyncio.Future[str]:
        future: asyncio.Future[str] = loop.create_future()
        answer = next(answers)
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return future

    result = await RetryPolicy().call(
        call, clock=clock, retry_on=lambda error: isinstance(error, Flaky)
    )
    assert result == "ok"
    assert clock.slept == [1.0]
