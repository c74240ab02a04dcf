"""The dispatcher: works stored webhook deliveries in the background (docs/design.md, data flow).

It claims due deliveries from the log (pending ones, failed ones whose retry time came, and
`processing` ones whose instance's lease ran out; at start-up the ones a crash left
`processing`: all on SQLite, this instance's own on a shared database), each under this
instance's lease (bot/claims.py), so instances sharing a database each work a delivery once;
it runs each concern's gidgethub Router on its own,
records each concern's result separately, and marks the delivery done, failed with a backoff,
or dead after `max_attempts`. Only the concerns with a handler for the event (`Router.fetch`)
run and get a result; the last one's result commits with the delivery's new state. A concern
that already succeeded for a delivery is not run again on a retry; every handler is idempotent
anyway, so a crash between a handler's effect and the `done` mark repeats nothing visible.

A delivery that can never be worked is `rejected` at once, without a retry
(bot/delivery_outcomes.py): a stored payload the decoder refuses or that does not fit its
event's envelope (bot/github/envelope.py; the intake refuses those, so these were stored before
a check existed), before any handler runs; or a handler's payload-shape error (KeyError,
TypeError, ValueError...), for which that concern is not run again while a retryable failure of
another concern is retried.

A handler is a plain async function of `(event, gh, context)`, gidgethub style: `gh` is the
delivery's installation client (`GitHubApp.client`, rate-limit aware), None for a delivery
without an installation or when no GitHub App is configured; `context` holds the services and
the stored delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import msgspec
from gidgethub import sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import Concern, HandlerContext
from bot.config import DEFAULT_SETTINGS
from bot.delivery_outcomes import (
    ConcernFailure,
    DeliveryStatus,
    delivery_outcome,
    failure_summary,
    is_payload_shape_error,
)
from bot.events.message import Event
from bot.github.envelope import check_payload
from bot.payloads import UndecodablePayload, decode_payload
from bot.services import Services
from bot.tasks import stop_tasks
from storage import deliveries
from storage.database import Params
from storage.deliveries import Delivery
from storage.timestamps import from_text

log = logging.getLogger(__name__)

IDLE_POLL_S = 30.0
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 3600.0


class PayloadRejected(Exception):
    """The stored payload can never be worked: no handler is run for it."""


class DeliveryProcessed(Event):
    """A stored webhook delivery was worked: done, failed (will retry), dead (given up) or
    rejected (its payload can never be worked: not retried)."""

    type_name: ClassVar[str] = "delivery_processed"
    concern: ClassVar[str] = "webhooks"
    delivery_pk: int
    source: str
    event: str
    action: str | None
    status: str
    error: str | None = None


def _context_line(delivery: Delivery) -> str:
    return f"delivery {delivery.source}/{delivery.delivery_id} ({delivery.event})"


def backoff_delay(attempts: int) -> float:
    return min(BACKOFF_BASE_S * (2 ** max(0, attempts - 1)), BACKOFF_CAP_S)


@dataclass
class Dispatcher:
    services: Services
    concerns: list[Concern]
    concurrency: int = DEFAULT_SETTINGS.dispatch_concurrency
    max_attempts: int = DEFAULT_SETTINGS.delivery_max_attempts
    # a worker's short interval (WORKER_POLL_INTERVAL): web instances store what it works
    idle_poll_s: float = IDLE_POLL_S
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _working: set[int] = field(default_factory=set)  # the deliveries of _running

    def wake(self) -> None:
        self._wakeup.set()

    async def recover(self) -> int:
        """Put back what a crash left half-worked; call once at start-up. On a database other
        instances share, only this instance's own (from before a restart under the same
        BIAGENT_INSTANCE_ID): the others' are taken over when their leases run out."""
        claims = self.services.claims
        instance = claims.instance if claims.shared else None
        count = await deliveries.requeue_interrupted(self.services.db, instance=instance)
        if count:
            log.info("resuming %d deliveries left unfinished by the last run", count)
        return count

    async def run(self) -> None:
        try:
            while True:
                # Cleared before looking for work, so a wake() during the look is not lost.
                self._wakeup.clear()
                await self.claim_and_start()
                await self._wait_for_work()
        finally:
            await stop_tasks(list(self._running))

    async def claim_and_start(self) -> int:
        free = self.concurrency - len(self._running)
        claims = self.services.claims
        if free <= 0 or not await claims.may_claim():
            return 0
        claimed = await deliveries.claim_due(self.services.db, lease=claims.lease(), limit=free)
        started = 0
        for delivery in claimed:
            if delivery.id in self._working:
                # Ours already: its lease lapsed (a late heartbeat) and the claim renewed it.
                continue
            self._working.add(delivery.id)
            task = asyncio.create_task(self.process(delivery), name=f"delivery-{delivery.id}")
            self._running.add(task)
            task.add_done_callback(functools.partial(self._finished, delivery.id))
            started += 1
        return started

    def _finished(self, delivery_pk: int, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._working.discard(delivery_pk)
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        timeout = self.idle_poll_s
        next_due = await deliveries.next_due_at(self.services.db)
        if (
            next_due is not None
            and len(self._running) < self.concurrency
            and not self.services.claims.outdated
        ):
            wait = (from_text(next_due) - self.services.clock.now()).total_seconds()
            timeout = min(timeout, max(wait, 0.0))
            if timeout == 0.0:
                return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as the wake-up is set, and shutdown then hangs for idle_poll_s.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def drain(self) -> None:
        """Work everything that is due now, and wait for it (tests and shutdown)."""
        while await self.claim_and_start() or self._running:
            if self._running:
                await asyncio.wait(set(self._running))

    async def process(self, delivery: Delivery) -> None:
        context_line = _context_line(delivery)
        try:
            payload = await self._payload(delivery)
        except PayloadRejected as rejected:
            await self._finish(delivery, DeliveryStatus.REJECTED, str(rejected))
            return
        try:
            failures, last_result = await self._run_concerns(delivery, payload, context_line)
        except Exception as error:  # outside every handler: retrying will not help either
            log.exception("%s: cannot be dispatched", context_line)
            await self._finish(delivery, DeliveryStatus.DEAD, f"undispatchable: {error}")
            return
        # claim_due counted this attempt in `attempts`.
        status = delivery_outcome(
            failures, attempts=delivery.attempts, max_attempts=self.max_attempts
        )
        await self._finish(delivery, status, failure_summary(failures), last_result)

    async def _finish(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        message: str,
        changes: list[tuple[str, Params]] | None = None,
    ) -> None:
        """Mark the delivery `status` (a failed one with its retry time) together with
        `changes`, and announce it."""
        now = self.services.clock.now()
        if status is DeliveryStatus.DONE:
            marked = deliveries.mark_done_statement(delivery.id, now=now)
        elif status is DeliveryStatus.REJECTED:
            message = f"rejected, not retried: {message}"
            marked = deliveries.mark_rejected_statement(delivery.id, error=message, now=now)
        else:
            retry_at = None
            if status is DeliveryStatus.FAILED:
                retry_at = now + timedelta(seconds=backoff_delay(delivery.attempts))
            marked = deliveries.mark_failed_statement(
                delivery.id, error=message, retry_at=retry_at, now=now
            )
        if status is not DeliveryStatus.DONE:
            log.warning(
                "%s: %s after attempt %d: %s",
                _context_line(delivery),
                status,
                delivery.attempts,
                message,
            )
        await self._announce(delivery, status, message or None, [*(changes or []), marked])

    async def _payload(self, delivery: Delivery) -> dict[str, Any]:
        """The stored payload as the handlers get it; PayloadRejected when it can never be
        worked (the intake refuses such payloads; these were stored before it did)."""
        text = await deliveries.load_payload(self.services.db, delivery.id)
        try:
            payload = decode_payload(text)
            if delivery.source == "github":
                check_payload(delivery.event, payload)
        except UndecodablePayload as error:
            raise PayloadRejected(str(error)) from None
        except msgspec.ValidationError as error:
            raise PayloadRejected(f"the payload does not fit a {delivery.event}: {error}") from None
        return payload

    def _client_for(self, delivery: Delivery) -> GitHubAPI | None:
        """The one GitHub client the delivery's handlers share: its installation's."""
        github = self.services.github
        if github is None or delivery.installation_id is None:
            return None
        return github.client(delivery.installation_id)

    async def _interested(
        self, delivery: Delivery, event: sansio.Event, rejected: set[str]
    ) -> list[Concern]:
        """The concerns with a handler for this event, less those a retry must not run again:
        done already, or `rejected` (the payload, on an earlier attempt)."""
        interested = [
            concern
            for concern in self.concerns
            if delivery.source in concern.sources and concern.router.fetch(event)
        ]
        if delivery.attempts > 1 and interested:
            finished = rejected | await deliveries.done_concerns(self.services.db, delivery.id)
            interested = [c for c in interested if c.name not in finished]
        return interested

    async def _run_concerns(
        self, delivery: Delivery, payload: dict[str, Any], context_line: str
    ) -> tuple[list[ConcernFailure], list[tuple[str, Params]]]:
        """Run each interested concern once; the failures that stand (with the rejections of
        earlier attempts), and the last one's result statement (it commits with the delivery's
        own new state)."""
        db, clock = self.services.db, self.services.clock
        event = sansio.Event(payload, event=delivery.event, delivery_id=delivery.delivery_id)
        gh = self._client_for(delivery)
        context = HandlerContext(self.services, delivery)
        # Rejections stand: a retry (for another concern's failure) does not run them again.
        earlier = (
            await deliveries.rejected_concerns(db, delivery.id) if delivery.attempts > 1 else {}
        )
        failures = [ConcernFailure(name, error, rejected=True) for name, error in earlier.items()]
        interested = await self._interested(delivery, event, set(earlier))
        last_result: list[tuple[str, Params]] = []
        for position, concern in enumerate(interested, start=1):
            failure = await self._run_concern(concern, event, gh, context, context_line)
            result = deliveries.record_concern_statement(
                delivery.id,
                concern.name,
                error=failure.error if failure else None,
                rejected=failure is not None and failure.rejected,
                now=clock.now(),
            )
            if position == len(interested):
                last_result = [result]
            else:
                await db.write(*result)
            if failure:
                failures.append(failure)
        return failures, last_result

    async def _run_concern(
        self,
        concern: Concern,
        event: sansio.Event,
        gh: GitHubAPI | None,
        context: HandlerContext,
        context_line: str,
    ) -> ConcernFailure | None:
        try:
            await concern.router.dispatch(event, gh, context)
        except Exception as error:
            log.error(
                "%s: concern %s failed: %s\n%s",
                context_line,
                concern.name,
                error,
                traceback.format_exc(limit=5),
            )
            return ConcernFailure(
                concern.name,
                f"{type(error).__name__}: {error}",
                rejected=is_payload_shape_error(error),
            )
        return None

    async def _announce(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        error: str | None,
        changes: list[tuple[str, Params]],
    ) -> None:
        """Record the delivery's new state and publish it, in one commit."""
        processed = DeliveryProcessed(
            delivery_pk=delivery.id,
            source=delivery.source,
            event=delivery.event,
            action=delivery.action,
            status=str(status),
            error=error or None,
        )
        await self.services.bus.publish("deliveries", processed, together_with=changes)
