"""GET /pipelines and /pipelines/{id}: the status page's view of ticket pipelines (issue 10).

Server-rendered with aiohttp-jinja2 (autoescape on: ticket text and agent output are hostile
input) from the same typed views as `GET /api/pipelines/{id}` (bot/pipelines/views.py). The
page's forms post to the JSON API with fetch() (web/static/pipeline.js); the page subscribes to
the stream `pipeline:<id>` over /ws and, on each pipeline event, reloads its state from
`GET /pipelines/{id}/state` (the same template fragment), so the HTML is made in one place.
The running step's tool calls and tokens are appended live by the script. What the steps
changed in the pipeline's worktrees (bot/pipelines/diffs.py) is its own fragment,
`GET /pipelines/{id}/diff`, fetched again when a step ends or a file changes: it runs git, so
it is not made again on every event.

Which buttons a state offers follows the engine's own sets (`ACTIVE`, `RESTARTABLE`), so the
page offers what the API would accept; a race still ends in the API's 409, shown by the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.pipelines.actions import RESTARTABLE
from bot.pipelines.diffs import PipelineDiff, pipeline_diff
from bot.pipelines.engine import ACTIVE
from bot.pipelines.events import stream_of
from bot.pipelines.states import Gate, PipelineStatus, Severity, StepStatus
from bot.pipelines.views import PipelineView, StepView, detail_of, summary_of
from storage import agent_runs, claude_sessions, pipelines, tickets, token_buffer, tool_calls
from storage.clarifications import ClarificationStatus
from storage.database import Database
from web.errors import path_int
from web.keys import SERVICES
from web.pages.formats import web_link

routes = web.RouteTableDef()

PAGE = r"/pipelines/{pipeline_id:\d+}"
SHOWN_CHARS = 400  # of a tool call's arguments or result; the full text is in tool_calls
# A step's restart or feedback is refused once the pipeline reached these (actions.py _restart).
CLOSED = frozenset(
    {PipelineStatus.COMPLETED, PipelineStatus.CANCELLED, PipelineStatus.WAITING_FOR_REVIEW}
)


@dataclass(frozen=True, slots=True)
class ShownCall:
    """One tool call of the step shown live, as the page lists it."""

    id: int
    tool: str
    arguments: str
    result: str | None
    is_error: bool


@dataclass(frozen=True, slots=True)
class Activity:
    """The step whose tool calls and tokens the page shows: the running one, else the last."""

    step_id: int
    phase: str
    attempt: int
    calls: list[ShownCall]


def controls_for(status: str) -> list[str]:
    """The lifecycle buttons a pipeline in `status` offers, in page order."""
    offered = []
    if status == PipelineStatus.CREATED:
        offered.append("start")
    if status in ACTIVE:
        offered.append("pause")
    if status in (PipelineStatus.PAUSED, PipelineStatus.FAILED):
        offered.append("resume")
    if status not in (PipelineStatus.COMPLETED, PipelineStatus.CANCELLED):
        offered.append("cancel")
    return offered


def step_actions(pipeline_status: str, step: StepView) -> frozenset[str]:
    """What a person may do to one step: approve (the plan gate), give feedback, restart."""
    offered = set()
    if step.gate == Gate.PLAN_APPROVAL and step.status == StepStatus.WAITING_FOR_APPROVAL:
        offered.add("approve")
    if pipeline_status not in CLOSED and step.status in RESTARTABLE:
        offered.add("restart")
        if step.status != StepStatus.STALE:
            offered.add("feedback")
    return frozenset(offered)


def holds_of(view: PipelineView) -> list[str]:
    """What the pipeline waits for from a person, in words."""
    held = [
        f"approval of the {step.phase} step"
        for step in view.steps
        if step.gate == Gate.PLAN_APPROVAL and step.status == StepStatus.WAITING_FOR_APPROVAL
    ]
    high = [r for r in view.risks if r.severity == Severity.HIGH and r.acknowledged_at is None]
    if high:
        held.append(f"acknowledgement of {len(high)} high risk(s)")
    questions = [c for c in view.clarifications if c.status == ClarificationStatus.OPEN]
    if questions:
        held.append(f"an answer to {len(questions)} question(s)")
    return held


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def activity_step(view: PipelineView) -> StepView | None:
    running = [step for step in view.steps if step.status == StepStatus.RUNNING]
    if running:
        return running[0]
    started = [step for step in view.steps if step.started_at is not None]
    # By start time, then position: steps can share a stamp (a stopped clock, a fast run).
    return max(started, key=lambda step: (step.started_at or "", step.position), default=None)


async def activity_of(db: Database, view: PipelineView) -> Activity | None:
    step = activity_step(view)
    if step is None:
        return None
    row = await pipelines.get_step(db, step.id)
    session = None
    if row is not None and row.session_key is not None:
        session = await claude_sessions.find(db, row.session_key)
    calls = [] if session is None else await tool_calls.for_session(db, session.id)
    return Activity(
        step_id=step.id,
        phase=step.phase,
        attempt=step.attempt,
        calls=[
            ShownCall(
                call.id,
                call.tool,
                shown(call.arguments),
                None if call.result is None else shown(call.result),
                call.is_error,
            )
            for call in calls
        ],
    )


async def state_of(db: Database, pipeline_id: int) -> dict[str, Any] | None:
    """What the state fragment (pipeline_state.html) shows; None for an unknown pipeline."""
    pipeline = await pipelines.get_pipeline(db, pipeline_id)
    if pipeline is None:
        return None
    view = await detail_of(db, pipeline)
    ticket = await tickets.get_ticket(db, pipeline.ticket_key)
    return {
        "pipeline": view,
        "ticket": ticket,
        "costs": await agent_runs.cost_totals(db, pipeline_id=pipeline.id),
        "controls": controls_for(view.status),
        "actions": {step.id: step_actions(view.status, step) for step in view.steps},
        "holds": holds_of(view),
        "link": web_link,
    }


def diff_lines(patch: str) -> list[tuple[str, str]]:
    """A patch's lines, each with its class on the page: add, del, hunk, meta (headers), ""."""
    lines = patch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(_line_kind(line), line) for line in lines]


def _line_kind(line: str) -> str:
    if line.startswith(("+++ ", "--- ")):
        return "meta"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    if line.startswith("@@"):
        return "hunk"
    return "" if line.startswith(" ") or not line else "meta"


def diff_context(diff: PipelineDiff) -> dict[str, Any]:
    return {"diff": diff, "diff_lines": diff_lines}


def _not_found(request: web.Request, pipeline_id: int) -> web.Response:
    return aiohttp_jinja2.render_template(
        "pipeline_missing.html", request, {"pipeline_id": pipeline_id}, status=404
    )


@routes.get("/pipelines")
@aiohttp_jinja2.template("pipelines.html")
async def pipelines_page(request: web.Request) -> dict[str, Any]:
    db = request.app[SERVICES].db
    found = await pipelines.list_pipelines(db, limit=200)
    summaries = await tickets.summaries_by_key(db, sorted({p.ticket_key for p in found}))
    return {
        "pipelines": [summary_of(pipeline) for pipeline in found],
        "summaries": {key: ticket.summary for key, ticket in summaries.items()},
        "enabled": request.app[SERVICES].pipelines is not None,
    }


@routes.get(PAGE)
async def pipeline_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    pipeline_id = path_int(request, "pipeline_id", "pipeline id")
    # The event id is read before the rows: an event that lands in between is replayed to the
    # page, which reloads its state; nothing falls between the render and the stream.
    epoch, last_id = services.bus.epoch, services.bus.last_id
    stream = stream_of(pipeline_id)
    token_seq = await token_buffer.last_seq(services.db, stream)
    state = await state_of(services.db, pipeline_id)
    if state is None:
        return _not_found(request, pipeline_id)
    context = {
        **state,
        "epoch": epoch,
        "last_id": last_id,
        "stream": stream,
        "token_seq": token_seq,
        "activity": await activity_of(services.db, state["pipeline"]),
        **diff_context(await pipeline_diff(services.db, pipeline_id)),
    }
    return aiohttp_jinja2.render_template("pipeline.html", request, context)


@routes.get(PAGE + "/state")
async def pipeline_state(request: web.Request) -> web.Response:
    """The page's changing part alone, fetched by the page when an event says it changed."""
    pipeline_id = path_int(request, "pipeline_id", "pipeline id")
    state = await state_of(request.app[SERVICES].db, pipeline_id)
    if state is None:
        return _not_found(request, pipeline_id)
    return aiohttp_jinja2.render_template("pipeline_state.html", request, state)


@routes.get(PAGE + "/diff")
async def pipeline_diff_part(request: web.Request) -> web.Response:
    """What the steps changed, alone: fetched by the page when a step ends or a file changes."""
    db = request.app[SERVICES].db
    pipeline_id = path_int(request, "pipeline_id", "pipeline id")
    if await pipelines.get_pipeline(db, pipeline_id) is None:
        return _not_found(request, pipeline_id)
    context = diff_context(await pipeline_diff(db, pipeline_id))
    return aiohttp_jinja2.render_template("pipeline_diff.html", request, context)
