"""The one retry policy: JIRA, GitHub and the periodic jobs all wait and give up the same way.

A `RetryPolicy` says how many attempts a call gets and how long to wait between them
(exponential from `base_s`, capped at `cap_s`, or what the service asked for when the error
carries a `retry_after`). It runs on tenacity, with the injected clock's sleep, so tests see the
waits without sleeping through them. Callers say which errors are worth another attempt; every
other error goes up at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a call is tried again."""

    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 900.0

    def delay(self, attempt: int, asked_s: float | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based): what the service asked
        for when it said, else exponential backoff; never more than `cap_s`."""
        if asked_s is not None:
            return min(max(0.0, asked_s), self.cap_s)
        return min(self.base_s * (2 ** max(0, attempt - 1)), self.cap_s)

    async def call(
        self,
        function: Callable[[], Awaitable[T]],
        *,
        clock: Clock,
        retry_on: Callable[[BaseException], bool],
        asked_wait: Callable[[BaseException], float | None] = lambda error: None,
        what: str = "call",
    ) -> T:
        """Await `function()`; when it raises an error `retry_on` accepts, wait and try again,
        up to `max_attempts` in all. The last error is raised as it is."""

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            asked = asked_wait(error) if error is not None else None
            return self.delay(state.attempt_number, asked)

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            log.warning(
                "%s: %s; attempt %d of %d, trying again in %.1fs",
                what,
                error,
                state.attempt_number,
                self.max_attempts,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            sleep=clock.sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=retry_if_exception(retry_on),
            before_sleep=before_sleep,
            reraise=True,
        )

        async def attempt() -> T:
            # tenacity awaits only coroutine functions; this also takes a callable that returns
            # any awaitable (a Future from run_in_executor, say).
            return await function()

        return await retrying(attempt)
