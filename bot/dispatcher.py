"""The dispatcher: works stored webhook deliveries in the background (docs/design.md, data flow).

It claims due deliveries from the log (pending ones, failed ones whose retry time came, and at
start-up the ones a crash left `processing`), runs each concern's gidgethub Router on its own,
records each concern's result separately, and marks the delivery done, failed with a backoff,
or dead after `max_attempts`. Only the concerns with a handler for the event (`Router.fetch`)
run and get a result; the last one's result commits with the delivery's new state. A concern
that already succeeded for a delivery is not run again on a retry; every handler is idempotent
anyway, so a crash between a handler's effect and the `done` mark repeats nothing visible.

A handler is a plain async function of `(event, gh, context)`, gidgethub style: `gh` is the
delivery's installation client (`GitHubApp.client`, rate-limit aware), None for a delivery
without an installation or when no GitHub App is configured; `context` holds the services and
the stored delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from gidgethub import sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import Concern, HandlerContext
from bot.config import DEFAULT_SETTINGS
from bot.events.message import Event
from bot.payloads import decode_payload
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


class DeliveryStatus(enum.StrEnum):
    """What working a delivery came to, as the log stores and `delivery_processed` says it."""

    DONE = "done"
    FAILED = "failed"  # will be retried at its retry time
    DEAD = "dead"  # no retry: undispatchable, or out of attempts


class DeliveryProcessed(Event):
    """A stored webhook delivery was worked: done, failed (will retry) or dead."""

    type_name: ClassVar[str] = "delivery_processed"
    concern: ClassVar[str] = "webhooks"
    delivery_pk: int
    source: str
    event: str
    action: str | None
    status: str
    error: str | None = None


def backoff_delay(attempts: int) -> float:
    return min(BACKOFF_BASE_S * (2 ** max(0, attempts - 1)), BACKOFF_CAP_S)


@dataclass
class Dispatcher:
    services: Services
    concerns: list[Concern]
    concurrency: int = DEFAULT_SETTINGS.dispatch_concurrency
    max_attempts: int = DEFAULT_SETTINGS.delivery_max_attempts
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    def wake(self) -> None:
        self._wakeup.set()

    async def recover(self) -> int:
        """Put back what a crash left half-worked; call once at start-up."""
        count = await deliveries.requeue_interrupted(self.services.db)
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
        if free <= 0:
            return 0
        claimed = await deliveries.claim_due(
            self.services.db, now=self.services.clock.now(), limit=free
        )
        for delivery in claimed:
            task = asyncio.create_task(self.process(delivery), name=f"delivery-{delivery.id}")
            self._running.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        timeout = IDLE_POLL_S
        next_due = await deliveries.next_due_at(self.services.db)
        if next_due is not None and len(self._running) < self.concurrency:
            wait = (from_text(next_due) - self.services.clock.now()).total_seconds()
            timeout = min(timeout, max(wait, 0.0))
            if timeout == 0.0:
                return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as the wake-up is set, and shutdown then hangs for IDLE_POLL_S.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def drain(self) -> None:
        """Work everything that is due now, and wait for it (tests and shutdown)."""
        while await self.claim_and_start() or self._running:
            if self._running:
                await asyncio.wait(set(self._running))

    async def process(self, delivery: Delivery) -> None:
        clock = self.services.clock
        context_line = f"delivery {delivery.source}/{delivery.delivery_id} ({delivery.event})"
        try:
            errors, last_result = await self._run_concerns(delivery, context_line)
        except Exception as error:  # the payload itself is unusable: retrying will not help
            log.exception("%s: cannot be dispatched", context_line)
            message = f"undispatchable: {error}"
            dead = deliveries.mark_failed_statement(
                delivery.id, error=message, retry_at=None, now=clock.now()
            )
            await self._announce(delivery, DeliveryStatus.DEAD, message, [dead])
            return
        if not errors:
            done = deliveries.mark_done_statement(delivery.id, now=clock.now())
            await self._announce(delivery, DeliveryStatus.DONE, None, [*last_result, done])
            return
        message = "; ".join(errors)
        attempts = delivery.attempts  # claim_due counted this attempt
        retry_at = None
        if attempts < self.max_attempts:
            retry_at = clock.now() + timedelta(seconds=backoff_delay(attempts))
        failed = deliveries.mark_failed_statement(
            delivery.id, error=message, retry_at=retry_at, now=clock.now()
        )
        status = DeliveryStatus.FAILED if retry_at else DeliveryStatus.DEAD
        log.warning("%s: %s after attempt %d: %s", context_line, status, attempts, message)
        await self._announce(delivery, status, message, [*last_result, failed])

    def _client_for(self, delivery: Delivery) -> GitHubAPI | None:
        """The one GitHub client the delivery's handlers share: its installation's."""
        github = self.services.github
        if github is None or delivery.installation_id is None:
            return None
        return github.client(delivery.installation_id)

    async def _run_concerns(
        self, delivery: Delivery, context_line: str
    ) -> tuple[list[str], list[tuple[str, Params]]]:
        """Run each interested concern once; their errors, and the last one's result statement
        (it commits with the delivery's own new state)."""
        db, clock = self.services.db, self.services.clock
        payload = decode_payload(await deliveries.load_payload(db, delivery.id))
        event = sansio.Event(payload, event=delivery.event, delivery_id=delivery.delivery_id)
        gh = self._client_for(delivery)
        context = HandlerContext(self.services, delivery)
        # Only the concerns with a handler for this event run and get a result recorded.
        interested = [
            concern
            for concern in self.concerns
            if delivery.source in concern.sources and concern.router.fetch(event)
        ]
        if delivery.attempts > 1 and interested:
            already_done = await deliveries.done_concerns(db, delivery.id)
            interested = [c for c in interested if c.name not in already_done]
        errors = []
        last_result: list[tuple[str, Params]] = []
        for position, concern in enumerate(interested, start=1):
            error = await self._run_concern(concern, event, gh, context, context_line)
            result = deliveries.record_concern_statement(
                delivery.id, concern.name, error=error, now=clock.now()
            )
            if position == len(interested):
                last_result = [result]
            else:
                await db.write(*result)
            if error:
                errors.append(f"{concern.name}: {error}")
        return errors, last_result

    async def _run_concern(
        self,
        concern: Concern,
        event: sansio.Event,
        gh: GitHubAPI | None,
        context: HandlerContext,
        context_line: str,
    ) -> str | None:
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
            return f"{type(error).__name__}: {error}"
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
