"""Issues from Jira into the mirror: paging a search, normalizing, storing, announcing.

`MirrorWriter` is the sync's hands: it pages through a JQL search (fetching the next page
while one is stored), turns each issue into a `TicketRecord` (fetching a truncated changelog
in full), stores a page in one transaction, and announces what changed as `tickets_updated`
and how far the run is as `sync_progress`. An issue that cannot be read is skipped and logged,
never the end of the run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.jira.client import JiraClient, SearchPage
from bot.jira.events import SyncProgress, TicketsUpdated
from bot.jira.issues import SYNC_FIELDS, changelog_is_truncated, ticket_from_issue, updated_ms_of
from bot.jira.runs import ProjectLeases, SyncJob, Tally
from bot.jira.scope import stream_of
from storage import tickets
from storage.database import Database
from storage.tickets import TicketRecord

log = logging.getLogger(__name__)

PAGE_SIZE = 100

# An (issue id, updated ms) already stored: the overlap of an incremental run skips these.
Boundary = set[tuple[str, int]]


class MirrorWriter:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: JiraClient,
        leases: ProjectLeases,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.client = client
        self.leases = leases
        self.page_size = page_size

    async def page_through(
        self, job: SyncJob, jql: str, tally: Tally, boundary: Boundary, total: int | None
    ) -> None:
        """Every page of `jql`, storing each; the next page is fetched while one is stored."""
        start_at = 0
        pending = asyncio.ensure_future(self._fetch(jql, start_at=0, token=None))
        try:
            while True:
                page = await pending
                start_at += len(page.issues)
                more = not page.is_last and bool(page.issues)
                if more:
                    pending = asyncio.ensure_future(
                        self._fetch(jql, start_at=start_at, token=page.next_token)
                    )
                if page.total is not None:
                    total = page.total
                await self.store_page(job, page.issues, tally, boundary)
                await self._progress(job, tally.seen, total)
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    async def _fetch(self, jql: str, *, start_at: int, token: str | None) -> SearchPage:
        return await self.client.search_page(
            jql,
            fields=SYNC_FIELDS,
            expand="changelog",
            start_at=start_at,
            token=token,
            max_results=self.page_size,
        )

    async def store_page(
        self, job: SyncJob, issues: list[dict[str, Any]], tally: Tally, boundary: Boundary
    ) -> None:
        """Store the issues of one page that are not in `boundary`, counting all in `tally`."""
        records: list[TicketRecord] = []
        for issue in issues:
            issue_id = str(issue.get("id") or "")
            tally.seen += 1
            if issue_id:
                tally.seen_ids.add(issue_id)  # Jira has it: never taken for a deletion
            try:
                updated_ms = updated_ms_of(issue)
            except (KeyError, TypeError, ValueError) as error:
                log_unreadable(job.project, issue, error)
                continue
            if tally.max_updated_ms is None or updated_ms > tally.max_updated_ms:
                tally.max_updated_ms = updated_ms
            if (issue_id, updated_ms) in boundary:
                continue
            record = await self.record(job.project, issue)
            if record is not None:
                records.append(record)
        await self._store(job.project, records, tally)

    async def record(self, project: str, issue: dict[str, Any]) -> TicketRecord | None:
        """The issue as a record; None (logged) when it cannot be read."""
        histories = None
        if changelog_is_truncated(issue):
            histories = await self.client.full_changelog(str(issue["id"]))
        try:
            return ticket_from_issue(issue, histories=histories)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            log_unreadable(project, issue, error)
            return None

    async def _store(self, project: str, records: list[TicketRecord], tally: Tally) -> None:
        if not records:
            return
        outcome = await tickets.store_tickets(self.db, records, now=self.clock.now())
        tally.created += len(outcome.created)
        tally.updated += len(outcome.updated)
        changed = [*outcome.created, *outcome.updated]
        if changed:
            await self.bus.publish(
                stream_of(project),
                TicketsUpdated(keys=changed, project=project, created=list(outcome.created)),
            )

    async def _progress(self, job: SyncJob, done: int, total: int | None) -> None:
        await self.bus.publish(
            stream_of(job.project),
            SyncProgress(project=job.project, done=done, total=total, run_id=job.run_id),
        )
        await self.leases.renew(job.project)
        if job.on_progress is not None:
            job.on_progress(done, total)


def log_unreadable(project: str, issue: dict[str, Any], error: Exception) -> None:
    log.warning(
        "JIRA sync of %s: skipping issue %s (id %s), it cannot be read: %s: %s",
        project,
        issue.get("key"),
        issue.get("id"),
        type(error).__name__,
        error,
    )
