"""Webhook senders that behave as GitHub's: signed posts, resent with the same delivery id.

A library for the benches (not a bench itself: the leading underscore keeps it out of `make
bench`). `Senders` runs N concurrent senders, each posting one delivery at a time and waiting
for its answer. A request that fails (connection refused or reset, a timeout, a 5xx) is sent
again with the same X-GitHub-Delivery and body, as GitHub's redelivery does, until it gets a
2xx: then the delivery counts as acknowledged. A 4xx is a refusal, not retried. Deliveries may
come in bursts: `burst` of them, then a pause until `period_s` after that burst began.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.common import BENCH_WEBHOOK_SECRET, sign

RETRY_PAUSE_S = 0.05
REQUEST_TIMEOUT_S = 10.0  # GitHub gives up on an unanswered delivery after 10 s


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook as GitHub sends it; `installation_id` and `repository_id`, when set, are
    what its handler is expected to record (for the caller's own count)."""

    delivery_id: str
    event: str
    body: bytes
    installation_id: int | None = None
    repository_id: int | None = None


@dataclass
class Sending:
    """What the senders did: every delivery issued, by id, and what became of it."""

    sent: dict[str, Delivery] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    resent: set[str] = field(default_factory=set)
    refused: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    requests: int = 0


class Senders:
    """`count` concurrent senders of the deliveries `make(0)`, `make(1)`, ..., each posting
    one at a time until it is acknowledged; they stop taking new ones once `stop` is set (or
    `limit` were issued)."""

    def __init__(
        self,
        url: str,
        make: Callable[[int], Delivery],
        *,
        count: int,
        limit: int | None = None,
        burst: int | None = None,
        period_s: float = 0.0,
    ) -> None:
        self.url = url
        self.make = make
        self.count = count
        self.limit = limit
        self.burst = burst
        self.period_s = period_s
        self.stop = asyncio.Event()
        self.sending = Sending()
        self._issued = 0
        self._burst_starts: list[float] = []

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=self.count)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._sender(session) for _ in range(self.count)))

    async def _sender(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set() and (self.limit is None or self._issued < self.limit):
            number = self._issued
            self._issued += 1
            delivery = self.make(number)
            self.sending.sent[delivery.delivery_id] = delivery
            await asyncio.sleep(max(0.0, self._burst_start(number) - time.monotonic()))
            await self._deliver(session, delivery)

    def _burst_start(self, number: int) -> float:
        """When the burst of delivery `number` may start: `period_s` after the previous one,
        or as soon as the previous one is all issued when that took longer (after a kill)."""
        if self.burst is None:
            return 0.0
        index = number // self.burst
        if index == len(self._burst_starts):  # the first delivery of its burst
            now = time.monotonic()
            previous = self._burst_starts[-1] if self._burst_starts else now
            self._burst_starts.append(max(now, previous + self.period_s))
        return self._burst_starts[index]

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        """Post until a 2xx; a 4xx is a refusal GitHub would not retry either."""
        headers = {
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.delivery_id,
            "X-Hub-Signature-256": sign(delivery.body, BENCH_WEBHOOK_SECRET),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
        }
        while True:
            self.sending.requests += 1
            try:
                async with session.post(self.url, data=delivery.body, headers=headers) as reply:
                    await reply.read()
                    status = reply.status
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                outcome = type(error).__name__
            else:
                if 200 <= status < 300:
                    self.sending.acknowledged.add(delivery.delivery_id)
                    return
                if status < 500:
                    self.sending.refused[status] += 1
                    return
                outcome = f"HTTP {status}"
            self.sending.failures[outcome] += 1
            self.sending.resent.add(delivery.delivery_id)
            await asyncio.sleep(RETRY_PAUSE_S)
