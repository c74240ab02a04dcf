"""Making a pipeline: its ticket, its repositories, its cycle type (a person's choice, a rule,
or later the triage agent), and optionally starting it.

A ticket must be in the JIRA mirror. The repositories are the one named in the request or the
ones linked to the ticket (`PUT /api/tickets/{key}/repositories`).
"""

from __future__ import annotations

from bot.clock import Clock
from bot.pipelines.detection import TicketTraits, detect_by_rules
from bot.pipelines.engine import ConflictingState, PipelineEngine, PipelineNotFound
from bot.pipelines.states import PipelineStatus
from storage import cycle_types, pipelines, repositories, tickets
from storage.database import Database
from storage.pipelines import Pipeline

TRIAGE_DECIDES = "no rule matched: the triage agent decides when the pipeline starts"


class InvalidPipelineRequest(ValueError):
    """The request names something that cannot make a pipeline (the API's 400)."""


class PipelineCreation:
    def __init__(self, *, db: Database, clock: Clock, engine: PipelineEngine) -> None:
        self.db = db
        self.clock = clock
        self.engine = engine

    async def create(
        self,
        *,
        ticket_key: str,
        repository: str | None,
        cycle_type: str | None,
        start: bool,
        trigger: str,
        by: str | None,
    ) -> Pipeline:
        ticket = await tickets.get_ticket(self.db, ticket_key)
        if ticket is None:
            raise PipelineNotFound(
                f"ticket {ticket_key} is not in the JIRA mirror (sync JIRA, or check the key)"
            )
        linked = await self._repositories(ticket_key, repository)
        # Everything that can refuse is checked before the row exists: a pipeline left
        # `created` would block the ticket's triggers.
        chosen: str | None
        if cycle_type is not None:
            if await cycle_types.get_cycle_type(self.db, cycle_type) is None:
                raise InvalidPipelineRequest(f"unknown cycle type {cycle_type!r}")
            chosen, reason = cycle_type, f"chosen by {by or 'a person'}"
        else:
            traits = TicketTraits(
                ticket.issue_type, ticket.labels, ticket.components, ticket.summary
            )
            found = detect_by_rules(await cycle_types.list_rules(self.db), traits)
            chosen, reason = (found.cycle_type, found.reason) if found else (None, TRIAGE_DECIDES)
        triage = await cycle_types.get_phase_definition(self.db, "triage")
        if chosen is None and triage is None:
            raise InvalidPipelineRequest(
                "no rule matches this ticket and there is no triage phase: choose a cycle type"
            )
        pipeline = await pipelines.create_pipeline(
            self.db,
            ticket_key=ticket_key,
            repositories=linked,
            trigger=trigger,
            created_by=by,
            now=self.clock.now(),
        )
        if chosen is not None:
            await self.choose_cycle_type(pipeline.id, chosen, reason=reason)
        elif triage is not None:
            await pipelines.add_triage_step(
                self.db, pipeline.id, triage, reason=reason, now=self.clock.now()
            )
        if start:
            return await self.engine.start(pipeline.id)
        return await self.engine.get(pipeline.id)

    async def _repositories(self, ticket_key: str, repository: str | None) -> list[str]:
        if repository is not None:
            found = await repositories.get_by_name(self.db, repository)
            if found is None:
                raise InvalidPipelineRequest(
                    f"repository {repository} is not registered (POST /api/repositories)"
                )
            return [found.full_name]
        linked = await repositories.for_ticket(self.db, ticket_key)
        if not linked:
            raise InvalidPipelineRequest(
                f"{ticket_key} has no linked repository: name one in `repository`, or link"
                f" them with PUT /api/tickets/{ticket_key}/repositories"
            )
        return [found.full_name for found in linked]

    async def choose_cycle_type(self, pipeline_id: int, name: str, *, reason: str) -> Pipeline:
        """Set the cycle type (and so the steps) of a pipeline that has not started."""
        pipeline = await self.engine.get(pipeline_id)
        if pipeline.status != PipelineStatus.CREATED:
            raise ConflictingState(
                f"pipeline {pipeline_id} is {pipeline.status}: its cycle type is fixed",
                pipeline.status,
            )
        chosen = await cycle_types.get_cycle_type(self.db, name)
        if chosen is None:
            raise InvalidPipelineRequest(f"unknown cycle type {name!r}")
        await pipelines.set_cycle_type(
            self.db,
            pipeline_id,
            chosen,
            reason=reason,
            max_cost_usd=chosen.max_cost_usd,
            now=self.clock.now(),
        )
        return await self.engine.get(pipeline_id)
