"""Finding what Jira no longer has: mirrored issues a listing did not return, checked by id.

A full sync checks every mirrored issue its pages did not return; an incremental one, when
Jira's count and the mirror's differ, lists every id in scope and repairs both ways (fetches
what the mirror lacks, checks what Jira lacks). Jira answers 400 to an `id in (...)` that names
a deleted issue ("An issue with key 'N' does not exist for field 'id'"), so Server is asked not
to validate those lookups, and on Cloud (which always validates) candidates are confirmed by
their GET first (404: gone). Only an issue Jira really lacks is deleted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.events.bus import EventBus
from bot.jira.client import JiraBadRequest, JiraClient
from bot.jira.events import TicketsUpdated
from bot.jira.issues import SYNC_FIELDS
from bot.jira.mirror import MirrorWriter
from bot.jira.runs import SyncJob, Tally
from bot.jira.scope import stream_of
from storage import tickets
from storage.database import Database

VERIFY_CHUNK = 100


class DeletionCheck:
    def __init__(
        self, *, db: Database, bus: EventBus, client: JiraClient, writer: MirrorWriter
    ) -> None:
        self.db = db
        self.bus = bus
        self.client = client
        self.writer = writer

    async def verify_missing(self, job: SyncJob, missing: list[str], tally: Tally) -> None:
        """Mirrored issues a listing did not return: store those Jira still has, drop the rest."""
        gone: list[str] = []
        for start in range(0, len(missing), VERIFY_CHUNK):
            chunk = missing[start : start + VERIFY_CHUNK]
            issues = await self._issues_among(job.jql, chunk, likely_gone=True)
            found = {str(issue.get("id")) for issue in issues}
            await self.writer.store_page(job, issues, tally, set())
            gone.extend(issue_id for issue_id in chunk if issue_id not in found)
        if gone:
            keys = await tickets.delete_tickets(self.db, gone)
            tally.deleted += len(keys)
            await self.bus.publish(
                stream_of(job.project),
                TicketsUpdated(keys=keys, project=job.project, deleted=keys),
            )

    async def sweep_ids(
        self, job: SyncJob, tally: Tally, remote_ids: list[str] | None = None
    ) -> None:
        """List every id in scope; fetch the ones the mirror lacks, verify the ones Jira lacks."""
        if remote_ids is None:
            remote_ids = await self.client.issue_ids(f"{job.jql} ORDER BY key ASC")
        remote = set(remote_ids)
        mirrored = await tickets.ids_of_project(self.db, job.project)
        absent = [issue_id for issue_id in remote_ids if issue_id not in mirrored]
        for start in range(0, len(absent), VERIFY_CHUNK):
            chunk = absent[start : start + VERIFY_CHUNK]
            issues = await self._issues_among(job.jql, chunk, likely_gone=False)
            await self.writer.store_page(job, issues, tally, set())
        await self.verify_missing(job, [i for i in mirrored if i not in remote], tally)

    async def _issues_among(
        self, scope_jql: str, ids: list[str], *, likely_gone: bool
    ) -> list[dict[str, Any]]:
        """The issues among `ids` (at most VERIFY_CHUNK) that Jira has within `scope_jql`.

        Cloud candidates that are `likely_gone` are confirmed by their GET first, others only
        when the search is refused.
        """
        confirmed = False
        if self.client.is_cloud and likely_gone:
            ids, confirmed = await self._still_there(ids), True
        while ids:
            try:
                page = await self.client.search_page(
                    f"{scope_jql} AND id in ({', '.join(ids)})",
                    fields=SYNC_FIELDS,
                    expand="changelog",
                    max_results=len(ids),
                    validate_query=False,
                )
            except JiraBadRequest:
                if not self.client.is_cloud or confirmed:
                    raise
                ids, confirmed = await self._still_there(ids), True
                continue
            return page.issues
        return []

    async def _still_there(self, ids: list[str]) -> list[str]:
        exists = await asyncio.gather(*(self.client.issue_exists(i) for i in ids))
        return [issue_id for issue_id, there in zip(ids, exists, strict=True) if there]
