"""Answering an agent's clarification question (the other half of request_clarification).

The question was stored and published (clarification_requested) by the loop, and its step
paused. An answer is stored here and published as clarification_answered; whoever owns the
step (the pipeline, the review responder) resumes it by calling run_step again with the same
session key, and the answer becomes the result of the model's request_clarification call.
"""

from __future__ import annotations

import dataclasses
import enum

from bot.agents.events import ClarificationAnswered
from bot.clock import Clock
from bot.events.bus import EventBus
from storage import clarifications
from storage.clarifications import Clarification, ClarificationStatus
from storage.database import Database
from storage.timestamps import to_text


class ClarificationProblem(enum.StrEnum):
    """Why an answer was refused (the API's error code)."""

    EMPTY_ANSWER = "empty_answer"
    NOT_FOUND = "not_found"
    ALREADY_ANSWERED = "already_answered"
    INVALID_CHOICE = "invalid_choice"


class ClarificationError(Exception):
    def __init__(self, code: ClarificationProblem, message: str) -> None:
        super().__init__(message)
        self.code = code


async def answer_clarification(
    db: Database,
    bus: EventBus,
    clock: Clock,
    clarification_id: int,
    answer: str,
    *,
    answered_by: str | None = None,
) -> Clarification:
    if not answer.strip():
        raise ClarificationError(ClarificationProblem.EMPTY_ANSWER, "the answer is empty")
    asked = await clarifications.get(db, clarification_id)
    if asked is None:
        raise ClarificationError(
            ClarificationProblem.NOT_FOUND, f"no clarification {clarification_id}"
        )
    already = ClarificationError(
        ClarificationProblem.ALREADY_ANSWERED, f"clarification {clarification_id} is answered"
    )
    if asked.status is not ClarificationStatus.OPEN:
        raise already
    answer = _checked_against_choices(asked, answer.strip())
    now = clock.now()
    stored = await clarifications.answer(
        db, clarification_id, answer=answer, answered_by=answered_by, now=now
    )
    if not stored:
        raise already
    await bus.publish(
        asked.stream,
        ClarificationAnswered(
            clarification_id=clarification_id,
            answer=answer.strip(),
            session_id=asked.session_id,
            answered_by=answered_by,
        ),
    )
    return dataclasses.replace(
        asked,
        status=ClarificationStatus.ANSWERED,
        answer=answer.strip(),
        answered_by=answered_by,
        answered_at=to_text(now),
    )


def _checked_against_choices(asked: Clarification, answer: str) -> str:
    """A question with choices takes one of them (case aside), spelled as the question did."""
    if not asked.choices:
        return answer
    for choice in asked.choices:
        if choice.casefold() == answer.casefold():
            return choice
    raise ClarificationError(
        ClarificationProblem.INVALID_CHOICE,
        f"answer with one of: {', '.join(asked.choices)}",
    )
