"""Each reviewer's latest review state on a pull request (`review_states`, issue 5).

The review router derives the pull request's overall review state from them (any change request,
else any approval, else waiting); a review older than the one kept, arriving late, changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database


@dataclass(frozen=True, slots=True)
class ReviewerState:
    reviewer_login: str
    state: str
    review_id: int
    submitted_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer_login,
            "state": self.state,
            "review_id": self.review_id,
            "submitted_at": self.submitted_at,
        }


async def record_reviewer_state(
    db: Database, pr_id: int, *, reviewer: str, state: str, review_id: int, submitted_at: str
) -> bool:
    """Keep each reviewer's deciding review; False when this one changes nothing: it is older
    than the one kept, or it is a `commented` review after an approval or a change request
    (GitHub keeps the decision until the reviewer decides again or it is dismissed)."""
    result = await db.write(
        """
        INSERT INTO review_states (pr_id, reviewer_login, state, review_id, submitted_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (pr_id, reviewer_login) DO UPDATE SET
            state = excluded.state, review_id = excluded.review_id,
            submitted_at = excluded.submitted_at
        WHERE excluded.submitted_at >= review_states.submitted_at
          AND NOT (excluded.state = 'commented'
                   AND review_states.state IN ('approved', 'changes_requested'))
        """,
        (pr_id, reviewer, state, review_id, submitted_at),
    )
    return result.rowcount == 1


async def is_approving_review(db: Database, pr_id: int, review_id: int) -> bool:
    found = await db.fetchval(
        "SELECT 1 FROM review_states WHERE pr_id = ? AND review_id = ? AND state = 'approved'",
        (pr_id, review_id),
    )
    return found is not None


async def dismiss_review(db: Database, pr_id: int, review_id: int) -> bool:
    result = await db.write(
        "UPDATE review_states SET state = 'dismissed' WHERE pr_id = ? AND review_id = ?",
        (pr_id, review_id),
    )
    return result.rowcount == 1


async def reviewer_states(db: Database, pr_id: int) -> list[ReviewerState]:
    rows = await db.fetchall(
        "SELECT reviewer_login, state, review_id, submitted_at FROM review_states"
        " WHERE pr_id = ? ORDER BY reviewer_login",
        (pr_id,),
    )
    return [ReviewerState(*row) for row in rows]
