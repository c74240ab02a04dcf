"""The durable debounce scheduler: fires each gathering batch at its `due_at`, on the clock.

Due times live in `review_batches`, not in memory: after a restart, `recover()` resumes the
batches a stop left running or responding, and the loop fires every pending batch at its due
time (at once when it is overdue). The loop sleeps on the injected clock until the next due
time or until woken (a new comment, a submitted review, a command). One batch per pull request
at a time: a batch that falls due while the previous one of its PR is worked waits for it.

With instances sharing a database, each batch is claimed before it is worked
(bot/claims.py): a due one by one instance only, under a lease its heartbeat renews and its
end releases. `recover()` at start-up, and every round of the loop after it, resume only the
running or responding batches whose lease is free or ran out (their instance died).

A batch whose work raises is retried: before pick-up by moving its due time back with a
backoff; while running or responding, in place after a backoff (its writes are keyed, so nothing
repeats). After the last attempt it ends `failed` with a neutral check run (worker.give_up), so
the pull request's next batches are not held behind it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.claims import WorkClaims
from bot.clock import Clock
from bot.reviews import worker
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus
from bot.tasks import stop_tasks
from storage import claims as claims_storage
from storage import review_batches
from storage.timestamps import from_text

log = logging.getLogger(__name__)

IDLE_POLL_S = 60.0
RETRY_BASE_S = 10.0
RETRY_CAP_S = 900.0
MAX_ATTEMPTS = 6


def retry_delay(attempt: int) -> float:
    return min(RETRY_BASE_S * (2 ** max(0, attempt - 1)), RETRY_CAP_S)


async def _sleep_until(clock: Clock, deadline: float) -> None:
    """Sleep until the clock's monotonic time reaches `deadline` (at once if it has)."""
    await clock.sleep(deadline - clock.monotonic())


class ReviewScheduler:
    def __init__(
        self,
        service: ReviewService,
        claims: WorkClaims,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        idle_poll_s: float | None = None,
    ) -> None:
        """`idle_poll_s`: a worker's short interval (WORKER_POLL_INTERVAL), since batches a
        web instance's API made due cannot wake it; None, IDLE_POLL_S."""
        self.service = service
        self.claims = claims
        self.max_attempts = max_attempts
        self.idle_poll_s = IDLE_POLL_S if idle_poll_s is None else idle_poll_s
        self._wakeup = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._recovered_at = float("-inf")

    def wake(self) -> None:
        self._wakeup.set()

    async def recover(self, *, at_start: bool = True) -> int:
        """Go on with the batches a stop left in the middle of their work: at start-up (all of
        them in a SQLite file's one process), then each round those whose lease lapsed."""
        claims = self.claims
        self._recovered_at = self.service.clock.monotonic()
        if not await claims.may_claim():
            return 0
        claimed = await claims_storage.claim_many(
            self.service.db,
            "review_batches",
            claims.lease(),
            where="status IN ('running', 'responding')",
            held_too=at_start and not claims.shared,
        )
        resumed = [batch_id for batch_id in claimed if batch_id not in self._running]
        for batch_id in resumed:
            log.info("resuming review batch %d", batch_id)
            self._start(batch_id)
        return len(resumed)

    async def run(self) -> None:
        try:
            while True:
                await self.start_due()
                await self._wait()
        finally:
            await stop_tasks(list(self._running.values()))

    async def start_due(self) -> int:
        started = 0
        since = self.service.clock.monotonic() - self._recovered_at
        if since >= self.claims.lease_s / 2:  # lapsed leases: looked for every half lease
            started = await self.recover(at_start=False)
        if not await self.claims.may_claim():
            return started
        db = self.service.db
        due = await review_batches.due_batches(db, self.service.clock.now())
        busy_prs = set()
        # A copy: a run finishing during the awaits below removes itself from _running.
        for batch_id in list(self._running):
            running = await review_batches.get_batch(self.service.db, batch_id)
            if running is not None:
                busy_prs.add(running.pr_id)
        for batch in due:
            if batch.id in self._running or batch.pr_id in busy_prs:
                continue
            if not await claims_storage.claim_one(
                db, "review_batches", batch.id, self.claims.lease(), where="status = 'gathering'"
            ):
                continue  # another instance took it
            busy_prs.add(batch.pr_id)
            self._start(batch.id)
            started += 1
        return started

    def _start(self, batch_id: int) -> None:
        if batch_id in self._running:
            return
        task = asyncio.create_task(self._work(batch_id), name=f"review-batch-{batch_id}")
        self._running[batch_id] = task
        task.add_done_callback(lambda _task: self._finished(batch_id))

    def _finished(self, batch_id: int) -> None:
        self._running.pop(batch_id, None)
        self._wakeup.set()

    async def _work(self, batch_id: int) -> None:
        try:
            await self._attempts(batch_id)
        finally:
            await claims_storage.release(
                self.service.db, "review_batches", batch_id, self.claims.instance
            )

    async def _attempts(self, batch_id: int) -> None:
        service = self.service
        attempt = 0
        while True:
            try:
                await worker.work(service, batch_id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                attempt += 1
                log.exception("review batch %d: attempt %d failed", batch_id, attempt)
                batch = await review_batches.get_batch(service.db, batch_id)
                if batch is None:
                    return
                if attempt >= self.max_attempts and batch.status != BatchStatus.GATHERING:
                    await worker.give_up(
                        service, batch_id, why=f"{type(error).__name__}: {error}"[:300]
                    )
                    return
                delay = retry_delay(attempt)
                if batch.status == BatchStatus.GATHERING:
                    await review_batches.set_due(
                        service.db, batch_id, service.clock.now() + timedelta(seconds=delay)
                    )
                    return
                await service.clock.sleep(delay)

    async def _wait(self) -> None:
        self._wakeup.clear()
        # At least every half lease: the batches whose instance died are looked for then.
        timeout = min(self.idle_poll_s, self.claims.lease_s / 2)
        next_due = await review_batches.next_due_at(self.service.db)
        clock = self.service.clock
        # The deadline is fixed now: the sleeper task starts later, and the clock may have
        # moved by then (a test's ManualClock.advance does, in between).
        waited_from = clock.monotonic()
        if next_due is not None:
            wait = (from_text(next_due) - clock.now()).total_seconds()
            if wait > 0:
                timeout = min(timeout, wait)
            elif not self._running:
                # It fell due since start_due() looked: look again now, not in IDLE_POLL_S.
                # (While a batch runs, its end wakes the loop.)
                return
        sleeper = asyncio.create_task(_sleep_until(clock, waited_from + timeout))
        waker = asyncio.create_task(self._wakeup.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            # return_exceptions collects the two helpers' own cancellations; a cancel of this
            # task arriving meanwhile (shutdown) still goes up, never swallowed here.
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def drain(self) -> None:
        """Work every batch that is due now, and wait for it (tests, benchmarks, shutdown)."""
        while await self.start_due() or self._running:
            if self._running:
                await asyncio.wait(set(self._running.values()))
