"""What review response is told about a pull request a pipeline opened: its ticket and plan.

A pipeline's last phase opens a pull request, which review response then answers
(docs/pipelines.md, docs/reviews.md). The review_response agent works better knowing why the
change exists: `pipeline_context_of` reads the pipeline that opened the pull request, its ticket
from the JIRA mirror and its approved plan (the current output of the step whose artifact is
the plan), and gives them as one section of the agent's task; None for any other pull request.
This function is all bot/reviews/ knows of pipelines. The text is capped, so a long ticket or
plan cannot crowd out the review comments.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import pipelines, step_outputs, tickets
from storage.database import Database

DESCRIPTION_CAP = 3000
PLAN_CAP = 6000


@dataclass(frozen=True, slots=True)
class PipelineContext:
    ticket_key: str
    summary: str | None  # None: the ticket is not in the mirror
    description: str
    plan: str | None  # None: the cycle type has no plan step, or it has no output


async def pipeline_context_of(db: Database, repository: str, number: int) -> str | None:
    """The section of the review agent's task about the pipeline that opened the PR."""
    opened = await pipelines.pipeline_of_pull_request(db, repository, number)
    if opened is None:
        return None
    pipeline = await pipelines.get_pipeline(db, opened.pipeline_id)
    if pipeline is None:
        return None
    ticket = await tickets.get_ticket(db, pipeline.ticket_key)
    outputs = await step_outputs.outputs_of(db, pipeline.id)
    plan = next(
        (
            outputs[step.id].text
            for step in await pipelines.list_steps(db, pipeline.id)
            if step.artifact_kind == "plan" and step.id in outputs
        ),
        None,
    )
    return context_text(
        PipelineContext(
            ticket_key=pipeline.ticket_key,
            summary=None if ticket is None else ticket.summary,
            description="" if ticket is None else ticket.description or "",
            plan=plan,
        )
    )


def _capped(text: str, cap: int) -> str:
    text = text.strip()
    return text if len(text) <= cap else text[:cap].rstrip() + "\n[... cut]"


def context_text(context: PipelineContext) -> str:
    """Pure: the section itself, headed so the agent tells it from the comments."""
    summary = context.summary or "(the ticket is not in biagent's JIRA mirror)"
    lines = [
        f"## This pull request comes from biagent's pipeline for {context.ticket_key}",
        "",
        "The change was made for this ticket, following the plan a person approved. Keep what"
        " you change consistent with them, unless a review comment asks otherwise.",
        "",
        f"Ticket {context.ticket_key}: {summary}",
    ]
    if context.description.strip():
        lines += ["", _capped(context.description, DESCRIPTION_CAP)]
    if context.plan and context.plan.strip():
        lines += ["", "Approved plan:", "", _capped(context.plan, PLAN_CAP)]
    return "\n".join(lines)
