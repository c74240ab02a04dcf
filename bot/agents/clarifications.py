"""Answering an agent's clarification question (the other half of request_clarification).

The question was stored and published (clarification_requested) by the loop, and its step
paused. An answer is stored here and published as clarification_answered; whoever owns the
step (the pipeline, the review responder) resumes it by calling run_step again with the same
session key, and the answer becomes the result of the model's request_clarification call.
"""

from __future__ import annotations

from bot.clock import Clock
from bot.events.bus import EventBus
from storage import clarifications
from storage.clarifications import Clarification
from storage.database import Database


class ClarificationError(Exception):
    def __init__(self, code: str, message: str) -> None:
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
        raise ClarificationError("empty_answer", "the answer is empty")
    asked = await clarifications.get(db, clarification_id)
    if asked is None:
        raise ClarificationError("not_found", f"no clarification {clarification_id}")
    if asked.status != "open":
        raise ClarificationError(
            "already_answered", f"clarification {clarification_id} is answered"
        )
    stored = await clarifications.answer(
        db, clarification_id, answer=answer.strip(), answered_by=answered_by, now=clock.now()
    )
    if not stored:
        raise ClarificationError(
            "already_answered", f"clarification {clarification_id} is answered"
        )
    await bus.publish(
        asked.stream,
        "clarification_answered",
        {
            "clarification_id": clarification_id,
            "answer": answer.strip(),
            "session_id": asked.session_id,
            "answered_by": answered_by,
        },
    )
    answered = await clarifications.get(db, clarification_id)
    assert answered is not None
    return answered
