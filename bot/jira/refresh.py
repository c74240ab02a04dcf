"""One issue brought up to date now, because a JIRA webhook said it changed or went away.

Fetched by a search within the sync scope, so an issue outside it is not mirrored (and is
forgotten if it moved out); an issue Jira no longer has is deleted. Announced as one
`ticket_updated`. bot/jira/webhooks.py calls this through `JiraSync`.
"""

from __future__ import annotations

from typing import Any

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.jira.client import JiraBadRequest, JiraClient, JiraNotFound
from bot.jira.events import TicketFields, TicketUpdated
from bot.jira.issues import SYNC_FIELDS
from bot.jira.mirror import MirrorWriter
from bot.jira.scope import issue_scope, stream_of
from storage import tickets
from storage.database import Database


class IssueRefresher:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: JiraClient,
        writer: MirrorWriter,
        jql_filter: str | None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.client = client
        self.writer = writer
        self.jql_filter = jql_filter

    async def refresh_issue(self, issue_id: str) -> str | None:
        """Bring one issue up to date now (a webhook said it changed); returns its key.

        Cloud answers 400 to `id = N` for a deleted N, but a 400 is no proof: the issue's GET
        must answer 404 before the ticket is deleted.
        """
        if not issue_id.isdigit():
            raise ValueError(f"not a Jira issue id: {issue_id!r}")
        found = await self._find(issue_id)
        if not found:
            return await self.forget_issue(issue_id)
        issue = found[0]
        record = await self.writer.record(str(issue.get("key", "")).rsplit("-", 1)[0], issue)
        if record is None:
            return None
        outcome = await tickets.store_tickets(self.db, [record], now=self.clock.now())
        if outcome.created or outcome.updated:
            await self.bus.publish(
                stream_of(record.project),
                TicketUpdated(
                    key=record.key,
                    project=record.project,
                    fields=TicketFields(status=record.status, summary=record.summary),
                    created=bool(outcome.created),
                ),
            )
        return record.key

    async def _find(self, issue_id: str) -> list[dict[str, Any]]:
        """The issue, if Jira has it within the sync scope (a list of at most one)."""
        try:
            page = await self.client.search_page(
                issue_scope(issue_id, self.jql_filter),
                fields=SYNC_FIELDS,
                expand="changelog",
                max_results=1,
                validate_query=False,
            )
        except JiraNotFound:
            return []
        except JiraBadRequest:
            if await self.client.issue_exists(issue_id):
                raise
            return []
        return page.issues

    async def forget_issue(self, issue_id: str) -> str | None:
        """Delete one issue from the mirror (a webhook said it was deleted)."""
        existing = await tickets.get_ticket_by_id(self.db, issue_id)
        if existing is None:
            return None
        await tickets.delete_tickets(self.db, [issue_id])
        await self.bus.publish(
            stream_of(existing.project),
            TicketUpdated(key=existing.key, project=existing.project, deleted=True),
        )
        return existing.key
