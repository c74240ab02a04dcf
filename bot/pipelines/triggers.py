"""JIRA drives pipelines: the trigger label added, `/biagent start`, `/biagent answer`.

Its place in DESIGN.md's flow: a concern of its own for JIRA deliveries (bot/routers.py), run by
the dispatcher beside the mirror's `jira` concern and recorded apart from it. What an event asks
for is decided by the pure functions here (the label in the webhook's changelog, the command at
the start of a comment); acting on it fetches the issue again first (a webhook is a trigger, not
the truth: a label removed since, or a ticket outside the sync scope, starts nothing).

- The label `settings.pipeline_trigger_label` added to a ticket (or on it when it is created)
  creates and starts its pipeline, trigger `jira_label`; the label staying on starts nothing
  more, and neither does a ticket with a pipeline under way (not completed, cancelled or failed).
- A comment whose first line is `/biagent start [cycle type]` does the same, trigger
  `jira_comment`; told so on the ticket when a pipeline is under way already.
- A comment `/biagent answer <clarification id> <answer>` answers a question of one of the
  ticket's pipelines and the step that asked goes on.

Whatever cannot be done (no linked repository, an unknown cycle type, a wrong choice) is said in a
comment on the ticket and logged, never raised: retrying would not change it. Comments written
by the JIRA account biagent authenticates as are never read as commands.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.agents.clarifications import (
    ClarificationError,
    ClarificationProblem,
    answer_clarification,
)
from bot.concerns import HandlerContext
from bot.jira.issues import adf_text
from bot.jira.service import JiraService
from bot.jira.webhooks import issue_id_of
from bot.pipelines.creation import InvalidPipelineRequest
from bot.pipelines.engine import PipelineNotFound
from bot.pipelines.notes import TicketNotes
from bot.pipelines.service import Pipelines
from bot.pipelines.states import PipelineStatus
from storage import clarifications, pipelines, tickets
from storage.clarifications import Clarification
from storage.pipelines import Pipeline

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

router = routing.Router()

LABEL_TRIGGER = "jira_label"
COMMENT_TRIGGER = "jira_comment"
USAGE = "/biagent start [cycle type], or /biagent answer <question number> <answer>"
# A pipeline in one of these no longer counts: the ticket may get a new one.
OVER = frozenset({PipelineStatus.COMPLETED, PipelineStatus.CANCELLED, PipelineStatus.FAILED})

_COMMAND = re.compile(r"/biagent(?![\w-])(.*)", re.IGNORECASE | re.DOTALL)


# -- what an event asks for (pure) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartCommand:
    cycle_type: str | None


@dataclass(frozen=True, slots=True)
class AnswerCommand:
    clarification_id: int
    answer: str


@dataclass(frozen=True, slots=True)
class UnreadableCommand:
    problem: str


Command = StartCommand | AnswerCommand | UnreadableCommand


def parse_command(body: str) -> Command | None:
    """The command a comment starts with; None when it does not start with `/biagent`.

    `start` reads its first line only; an answer is the rest of the comment after its number.
    """
    found = _COMMAND.match(body.lstrip())
    if found is None:
        return None
    first_line, _, more = found.group(1).partition("\n")
    words = first_line.split()
    verb = words[0].casefold() if words else ""
    if verb == "start":
        if len(words) > 2:
            return UnreadableCommand(f"`/biagent start` takes one cycle type at most ({USAGE})")
        return StartCommand(words[1].casefold() if len(words) == 2 else None)
    if verb == "answer":
        _, number, text = [*first_line.split(maxsplit=2), "", ""][:3]
        answer = f"{text}\n{more}".strip()
        if not re.fullmatch(r"[0-9]{1,18}", number) or not answer:
            return UnreadableCommand(
                f"`/biagent answer` needs a question number and an answer ({USAGE})"
            )
        return AnswerCommand(int(number), answer)
    return UnreadableCommand(f"unknown command `/biagent {first_line.strip()}` ({USAGE})")


def has_label(labels: Iterable[str], label: str) -> bool:
    return label.casefold() in (name.casefold() for name in labels)


def label_added_in(changelog: Any, label: str) -> bool:
    """Whether a webhook's changelog adds `label` (Jira writes labels space-separated)."""
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or "labels" not in (
            item.get("field"),
            item.get("fieldId"),
        ):
            continue
        before = str(item.get("fromString") or "").split()
        after = str(item.get("toString") or "").split()
        if has_label(after, label) and not has_label(before, label):
            return True
    return False


def written_by(author: Any, account: Mapping[str, Any]) -> bool:
    """Whether a comment's author is `account` (Cloud names people by accountId, Server by
    name and key; the e-mail address, when Jira shows it, is either's)."""
    if not isinstance(author, Mapping):
        return False
    for name in ("accountId", "key", "name"):
        if account.get(name) and author.get(name) == account.get(name):
            return True
    email = str(account.get("emailAddress") or "").casefold()
    return bool(email) and str(author.get("emailAddress") or "").casefold() == email


def person_of(user: Any) -> str | None:
    """How a webhook names a person, for `created_by` and `answered_by`."""
    if not isinstance(user, Mapping):
        return None
    for name in ("displayName", "name", "accountId"):
        if user.get(name):
            return str(user[name])
    return None


# -- acting on it -----------------------------------------------------------------------------

# One start at a time per ticket: a label and a `/biagent start` arriving together (the
# dispatcher works deliveries side by side) must not both find the ticket free.
_starting: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock_for(key: str) -> asyncio.Lock:
    lock = _starting.get(key)
    if lock is None:
        lock = _starting[key] = asyncio.Lock()
    return lock


@dataclass(frozen=True, slots=True)
class StartRequest:
    issue_id: str
    trigger: str
    by: str | None
    cycle_type: str | None = None


class JiraTriggers:
    """What the JIRA events of one delivery do to pipelines."""

    def __init__(
        self, *, services: Services, jira: JiraService, pipelines: Pipelines, delivery_id: str
    ) -> None:
        self.services = services
        self.jira = jira
        self.pipelines = pipelines
        self.delivery_id = delivery_id
        self.notes = TicketNotes(
            db=services.db, jira=jira.client, jira_url=services.settings.jira_url
        )

    @classmethod
    def of(cls, event: sansio.Event, context: HandlerContext) -> JiraTriggers | None:
        services = context.services
        if services.jira is None or services.pipelines is None:
            log.info("JIRA webhook %s: pipelines or JIRA are off", event.delivery_id)
            return None
        return cls(
            services=services,
            jira=services.jira,
            pipelines=services.pipelines,
            delivery_id=event.delivery_id,
        )

    async def ticket_key(self, issue_id: str) -> str | None:
        """The issue brought up to date in the mirror; None when it is outside the sync scope."""
        key = await self.jira.sync.refresh_issue(issue_id)
        if key is None:
            log.info("JIRA webhook %s: issue %s is not mirrored", self.delivery_id, issue_id)
        return key

    async def start(self, request: StartRequest) -> Pipeline | None:
        """Create and start the ticket's pipeline, unless one is under way already."""
        key = await self.ticket_key(request.issue_id)
        if key is None:
            return None
        ticket = await tickets.get_ticket(self.services.db, key)
        label = self.services.settings.pipeline_trigger_label
        labelled = ticket is not None and has_label(ticket.labels, label)
        if request.trigger == LABEL_TRIGGER and not labelled:
            log.info("JIRA webhook %s: %s no longer has label %r", self.delivery_id, key, label)
            return None
        async with _lock_for(key):
            under_way = await self.under_way(key)
            if under_way is not None:
                log.info(
                    "JIRA webhook %s: %s has pipeline %d (%s): no second one",
                    self.delivery_id, key, under_way.id, under_way.status,
                )  # fmt: skip
                if request.trigger == COMMENT_TRIGGER:
                    await self.notes.comment(
                        key, f"biagent's pipeline {under_way.id} is {under_way.status} already."
                    )
                return None
            return await self._create(key, request)

    async def _create(self, key: str, request: StartRequest) -> Pipeline | None:
        try:
            created = await self.pipelines.creation.create(
                ticket_key=key,
                repository=None,
                cycle_type=request.cycle_type,
                start=True,
                trigger=request.trigger,
                by=request.by,
            )
        except (InvalidPipelineRequest, PipelineNotFound) as error:
            log.warning("JIRA webhook %s: no pipeline for %s: %s", self.delivery_id, key, error)
            await self.notes.comment(key, f"biagent cannot start a pipeline for {key}: {error}")
            return None
        log.info(
            "JIRA webhook %s: pipeline %d started for %s (%s by %s)",
            self.delivery_id, created.id, key, request.trigger, request.by,
        )  # fmt: skip
        return created

    async def under_way(self, key: str) -> Pipeline | None:
        for pipeline in await pipelines.list_pipelines(self.services.db, ticket_key=key):
            if PipelineStatus(pipeline.status) not in OVER:
                return pipeline
        return None

    async def answer(self, issue_id: str, command: AnswerCommand, by: str | None) -> None:
        """Answer a question of one of the ticket's pipelines; the step that asked goes on."""
        key = await self.ticket_key(issue_id)
        if key is None:
            return
        services = self.services
        asked = await clarifications.get(services.db, command.clarification_id)
        if asked is None or await self.ticket_of(asked) != key:
            await self.notes.comment(
                key, f"biagent has no question {command.clarification_id} on {key}."
            )
            return
        try:
            answered = await answer_clarification(
                services.db,
                services.bus,
                services.clock,
                command.clarification_id,
                command.answer,
                answered_by=by,
            )
        except ClarificationError as error:
            if not _said_before(error, asked, command, by):
                await self.notes.comment(
                    key,
                    f"biagent could not take the answer to question {asked.id}: {error}",
                )
            log.info("JIRA webhook %s: %s: answer refused: %s", self.delivery_id, key, error)
            return
        resumed = await self.pipelines.clarification_answered(answered)
        log.info(
            "JIRA webhook %s: %s: question %d answered by %s%s",
            self.delivery_id, key, answered.id, by,
            f", pipeline {resumed.id} goes on" if resumed is not None else "",
        )  # fmt: skip

    async def ticket_of(self, asked: Clarification) -> str | None:
        """The ticket whose pipeline asked the question; None for a question of no pipeline."""
        if asked.step_id is None:
            return None
        step = await pipelines.get_step(self.services.db, asked.step_id)
        if step is None:
            return None
        found = await pipelines.get_pipeline(self.services.db, step.pipeline_id)
        return None if found is None else found.ticket_key

    async def is_own(self, author: Any) -> bool:
        return written_by(author, await self.jira.client.myself())


def _said_before(
    error: ClarificationError, asked: Clarification, command: AnswerCommand, by: str | None
) -> bool:
    """The same person's same answer again: Jira delivered the comment twice, nothing to say."""
    return (
        error.code is ClarificationProblem.ALREADY_ANSWERED
        and asked.answered_by == by
        and (asked.answer or "").casefold() == command.answer.casefold()
    )


# -- the handlers -----------------------------------------------------------------------------


@router.register("jira:issue_updated")
async def on_issue_updated(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    label = context.services.settings.pipeline_trigger_label
    if not label_added_in(event.data.get("changelog"), label):
        return
    await _start_for_label(event, context)


@router.register("jira:issue_created")
async def on_issue_created(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    fields = (event.data.get("issue") or {}).get("fields") or {}
    labels = fields.get("labels") if isinstance(fields, Mapping) else None
    label = context.services.settings.pipeline_trigger_label
    if not isinstance(labels, list) or not has_label(map(str, labels), label):
        return
    await _start_for_label(event, context)


async def _start_for_label(event: sansio.Event, context: HandlerContext) -> None:
    triggers = JiraTriggers.of(event, context)
    issue_id = issue_id_of(event.data)
    if triggers is None or issue_id is None:
        return
    by = person_of(event.data.get("user"))
    await triggers.start(StartRequest(issue_id, LABEL_TRIGGER, by))


@router.register("comment_created")
async def on_comment_created(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    comment = event.data.get("comment")
    if not isinstance(comment, Mapping):
        return
    command = parse_command(adf_text(comment.get("body")))
    issue_id = issue_id_of(event.data)
    if command is None or issue_id is None:
        return
    triggers = JiraTriggers.of(event, context)
    if triggers is None or await triggers.is_own(comment.get("author")):
        return
    by = person_of(comment.get("author"))
    if isinstance(command, StartCommand):
        await triggers.start(StartRequest(issue_id, COMMENT_TRIGGER, by, command.cycle_type))
    elif isinstance(command, AnswerCommand):
        await triggers.answer(issue_id, command, by)
    else:
        key = await triggers.ticket_key(issue_id)
        if key is not None:
            await triggers.notes.comment(key, f"biagent did not understand: {command.problem}")
