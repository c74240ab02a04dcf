"""The outcome check: exactly one outcome per comment of a batch, honest when there is none.

The engine returns what the agent reported; this module turns it into one `ItemOutcome` per
comment. A comment with no outcome, with conflicting ones, `fixed` without any commit, or
`declined`/`question` without their text is answered `not_addressed` with the reason, never
silently dropped. Outcomes for comments that are not in the batch are ignored (and reported).
"""

from __future__ import annotations

import logging

from bot.reviews.engine import (
    CommentOutcome,
    EngineResult,
    EngineStatus,
    OutcomeKind,
    ReviewBatch,
)
from bot.reviews.states import Answer
from storage.review_iterations import ItemOutcome

log = logging.getLogger(__name__)

NOT_ADDRESSED = Answer.NOT_ADDRESSED

_STOPPED_BECAUSE = {
    EngineStatus.COMPLETED: "the agent finished without reporting on this comment",
    EngineStatus.BUDGET_STOPPED: "the run reached its budget before it got to this comment",
    EngineStatus.RATE_LIMITED: "the model was rate-limited and the run stopped early",
    EngineStatus.FAILED: "the run failed",
}


def missing_reason(result: EngineResult) -> str:
    reason = _STOPPED_BECAUSE[result.status]
    if result.status is EngineStatus.FAILED and result.error:
        reason = f"{reason}: {result.error}"
    return reason


def check_outcomes(batch: ReviewBatch, result: EngineResult) -> tuple[list[ItemOutcome], list[int]]:
    """One outcome per comment of the batch, and the ids of outcomes for unknown comments.

    Comments are keyed by (kind, id): a review's body and a diff comment can share an id. An
    outcome without its comment's kind that names such a shared id cannot be placed, and each
    comment it might mean is answered not addressed rather than given another's outcome."""
    by_comment: dict[tuple[str, int], list[CommentOutcome]] = {}
    kinds_of: dict[int, list[str]] = {}
    for comment in batch.comments:
        kinds_of.setdefault(comment.comment_id, []).append(comment.kind)
    ambiguous: set[tuple[str, int]] = set()
    strays = []
    for outcome in result.outcomes:
        kinds = kinds_of.get(outcome.comment_id, [])
        if outcome.comment_kind is not None:
            kinds = [kind for kind in kinds if kind == outcome.comment_kind]
        if not kinds:
            strays.append(outcome.comment_id)
            continue
        if len(kinds) > 1:
            ambiguous.update((kind, outcome.comment_id) for kind in kinds)
            continue
        by_comment.setdefault((kinds[0], outcome.comment_id), []).append(outcome)
    if strays:
        log.warning("batch %s: outcomes for comments not in it: %s", batch.batch_id, strays)
    checked = []
    for comment in batch.comments:
        key = (comment.kind, comment.comment_id)
        if key in ambiguous and key not in by_comment:
            checked.append(
                ItemOutcome(
                    comment.kind,
                    comment.comment_id,
                    NOT_ADDRESSED,
                    f"the agent's report names {comment.comment_id}, which is more than one "
                    "comment of this batch",
                    None,
                )
            )
            continue
        reported = _distinct(by_comment.get(key, []))
        checked.append(_one(comment.kind, comment.comment_id, reported, result))
    return checked, strays


def _distinct(outcomes: list[CommentOutcome]) -> list[CommentOutcome]:
    unique: list[CommentOutcome] = []
    for outcome in outcomes:
        if outcome not in unique:
            unique.append(outcome)
    return unique


def _one(
    kind: str, comment_id: int, reported: list[CommentOutcome], result: EngineResult
) -> ItemOutcome:
    def not_addressed(reason: str) -> ItemOutcome:
        return ItemOutcome(kind, comment_id, NOT_ADDRESSED, reason, None)

    if not reported:
        return not_addressed(missing_reason(result))
    if len(reported) > 1:
        kinds = ", ".join(str(outcome.kind) for outcome in reported)
        return not_addressed(f"the agent reported conflicting outcomes ({kinds})")
    outcome = reported[0]
    note = f" {outcome.note}" if outcome.note else ""
    if outcome.kind is OutcomeKind.FIXED:
        commit = outcome.commit_sha or result.commit_sha
        if not commit or result.commit_sha is None:
            return not_addressed("the agent reported a fix, but no commit was pushed")
        return ItemOutcome(kind, comment_id, Answer.FIXED, (outcome.note or "").strip(), commit)
    if outcome.kind is OutcomeKind.DECLINED:
        if not (outcome.reason or "").strip():
            return not_addressed("the agent declined without giving a reason")
        return ItemOutcome(
            kind, comment_id, Answer.DECLINED, (outcome.reason or "").strip() + note, None
        )
    if not (outcome.question or "").strip():
        return not_addressed("the agent had a question but did not say what it was")
    return ItemOutcome(
        kind, comment_id, Answer.QUESTION, (outcome.question or "").strip() + note, None
    )
