"""This instance's claims on shared work: its identity, its leases' length, the heartbeat that
renews them, and the version gate (issue 13; docs/database.md, Work claimed once).

Deliveries (bot/dispatcher.py), review batches (bot/reviews/scheduler.py) and pipelines
(bot/pipelines/engine.py) are claimed by an instance with a lease of `WORK_LEASE_SECONDS` on
the injected clock (storage/claims.py has the SQL). While the work runs, `run()` renews every
lease this instance holds three times per lease; an instance that dies stops renewing, and its
work is taken over by another once the lease has run out.

Upgrades: before each claim round the workers ask `may_claim()`. It compares the database's
schema (the newest migration applied, read again at most every `VERSION_CHECK_S`) with the
newest this code ships: an instance older than the database stops claiming, says so once in
the log, and its readiness reports it, instead of working rows whose meaning it does not know.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.clock import Clock
from storage import claims
from storage.claims import Lease
from storage.database import Database, available_migrations

log = logging.getLogger(__name__)

VERSION_CHECK_S = 5.0
RENEWALS_PER_LEASE = 3


class WorkClaims:
    """Who this instance is to the others, and whether it may claim work now."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        instance: str,
        lease_s: float,
        code_version: int | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.instance = instance
        self.lease_s = lease_s
        self.code_version = (
            code_version
            if code_version is not None
            else max(version for version, _, _ in available_migrations(db.dialect))
        )
        self.database_version: int | None = None
        self._checked_at: float | None = None
        self.renewals = 0

    def lease(self) -> Lease:
        """The terms of a claim made now."""
        now = self.clock.now()
        return Lease(self.instance, now, now + timedelta(seconds=self.lease_s))

    @property
    def outdated(self) -> bool:
        """Whether the database was migrated past this code (by a newer instance)."""
        return self.database_version is not None and self.database_version > self.code_version

    @property
    def shared(self) -> bool:
        """Whether other processes may work the same database (then a start-up resumes only
        its own or lapsed work); a SQLite file has one process."""
        return self.db.dialect != "sqlite"

    async def may_claim(self) -> bool:
        """False while the database's schema is newer than this code's (checked again at most
        every VERSION_CHECK_S of the clock)."""
        monotonic = self.clock.monotonic()
        if self._checked_at is None or monotonic - self._checked_at >= VERSION_CHECK_S:
            self._checked_at = monotonic
            was_outdated = self.outdated
            self.database_version = await claims.schema_version(self.db)
            if self.outdated and not was_outdated:
                log.error(
                    "instance %s stops claiming work: the database is at schema version %d,"
                    " newer than this code's %d (a newer biagent migrated it); upgrade this"
                    " instance",
                    self.instance,
                    self.database_version,
                    self.code_version,
                )
        return not self.outdated

    async def heartbeat(self) -> int:
        """Renew every lease this instance holds; how many rows."""
        renewed = await claims.renew(self.db, self.lease())
        self.renewals += 1
        return renewed

    async def run(self) -> None:
        """Renew the leases RENEWALS_PER_LEASE times per lease until cancelled; an error (the
        database away for a moment) is logged and the next beat tries again."""
        while True:
            await self.clock.sleep(self.lease_s / RENEWALS_PER_LEASE)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("instance %s: renewing its leases failed", self.instance)
