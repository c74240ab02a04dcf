"""The delivery log's writes from outside: a webhook accepted, a stored delivery queued again.

The webhook endpoints and `POST /api/deliveries/{id}/redeliver` call this (docs/design.md, Data flow
of a webhook); each write that leaves work behind wakes the dispatcher, handed in as `wake`
(the dispatcher is built from the services, so this is built after it, by the app factory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.clock import Clock
from storage import deliveries
from storage.database import Database
from storage.deliveries import Delivery


class DeliveryBusy(Exception):
    """The delivery is being worked right now: it cannot be queued again until that ends."""


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """What the delivery log keeps of a webhook: its identity, columns and raw payload."""

    source: str
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    payload_text: str


class DeliveryIntake:
    def __init__(self, *, db: Database, clock: Clock, wake: Callable[[], None]) -> None:
        self.db = db
        self.clock = clock
        self.wake = wake

    async def accept(self, delivery: WebhookDelivery) -> bool:
        """Store (committed on return) and wake the dispatcher; False for a delivery id that
        is stored already (a redelivery: nothing to do)."""
        stored = await deliveries.accept(
            self.db,
            source=delivery.source,
            delivery_id=delivery.delivery_id,
            event=delivery.event,
            action=delivery.action,
            installation_id=delivery.installation_id,
            payload=delivery.payload_text,
            now=self.clock.now(),
        )
        if stored:
            self.wake()
        return stored

    async def redeliver(self, delivery_pk: int) -> Delivery | None:
        """Queue a stored delivery to be worked again from scratch; None when there is no such
        delivery, DeliveryBusy while it is being worked."""
        if await deliveries.get(self.db, delivery_pk) is None:
            return None
        if not await deliveries.redeliver(self.db, delivery_pk, now=self.clock.now()):
            raise DeliveryBusy(f"delivery {delivery_pk} is being processed right now")
        again = await deliveries.get(self.db, delivery_pk)
        # Woken only now, so the answer shows the redelivery, not a claim that raced it.
        self.wake()
        return again
