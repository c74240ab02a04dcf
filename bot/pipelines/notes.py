"""What a pipeline tells its JIRA ticket: a question asked, the pull request opened, a failure;
and what the JIRA triggers (triggers.py) answer a request they cannot carry out.

Only when JIRA is configured (a JiraClient is given). A comment that cannot be posted is logged
and never stops the pipeline: the status page and the events carry the same news.
"""

from __future__ import annotations

import logging

from bot.jira.client import JiraClient
from storage import clarifications, tickets
from storage.database import Database
from storage.pipelines import Pipeline, PipelinePullRequest

log = logging.getLogger(__name__)


class TicketNotes:
    def __init__(
        self,
        *,
        db: Database,
        jira: JiraClient | None,
        jira_url: str | None,
        done_transition: str | None = None,
    ) -> None:
        self.db = db
        self.jira = jira
        self.jira_url = jira_url.rstrip("/") if jira_url else None
        self.done_transition = done_transition

    def ticket_url(self, key: str) -> str | None:
        return f"{self.jira_url}/browse/{key}" if self.jira_url else None

    async def summary_of(self, key: str) -> str:
        ticket = await tickets.get_ticket(self.db, key)
        return ticket.summary if ticket is not None else key

    async def comment(self, key: str, body: str) -> None:
        """Post `body` on the ticket; a failure is logged, never raised."""
        if self.jira is None:
            return
        try:
            await self.jira.add_comment(key, body)
        except Exception as error:  # the page and the events carry the same news
            log.warning("%s: cannot comment on the ticket: %s", key, error)

    async def clarification_asked(self, pipeline: Pipeline, clarification_id: int) -> None:
        asked = await clarifications.get(self.db, clarification_id)
        if asked is None:
            return
        choices = f"\nChoices: {', '.join(asked.choices)}" if asked.choices else ""
        await self.comment(
            pipeline.ticket_key,
            f"biagent has a question (pipeline {pipeline.id}):\n{asked.question}{choices}\n\n"
            f"Answer with a comment starting with: /biagent answer {clarification_id} ...",
        )

    async def pull_requests_opened(
        self, pipeline: Pipeline, opened: list[PipelinePullRequest]
    ) -> None:
        links = "\n".join(f"- {pull.url}" for pull in opened)
        await self.comment(pipeline.ticket_key, f"biagent opened a pull request:\n{links}")
        if self.jira is not None and self.done_transition:
            try:
                await self._transition(pipeline.ticket_key, self.done_transition)
            except Exception as error:
                log.warning(
                    "%s: transition %r failed: %s", pipeline.ticket_key, self.done_transition, error
                )

    async def _transition(self, key: str, name: str) -> None:
        if self.jira is None:
            return
        for transition in await self.jira.transitions(key):
            if str(transition.get("name", "")).casefold() == name.casefold():
                await self.jira.transition(key, str(transition["id"]))
                return
        log.warning("%s: no transition named %r", key, name)

    async def failed(self, pipeline: Pipeline, phase: str | None, kind: str, message: str) -> None:
        where = f" in phase {phase}" if phase else ""
        await self.comment(
            pipeline.ticket_key,
            f"biagent's pipeline {pipeline.id} failed{where} ({kind}): {message}",
        )
