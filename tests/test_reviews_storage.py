"""Review storage on a real SQLite file: a comment joins one batch, replies are written once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from storage import pull_requests, review_batches, review_comments, review_replies
from storage.database import Database
from storage.review_comments import NewComment

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 11, 24, 15, 40, tzinfo=UTC)


async def a_pr(db: Database) -> pull_requests.PullRequest:
    return await pull_requests.upsert_pull_request(
        db,
        repository="o/r",
        number=1,
        installation_id=1,
        github_id=None,
        title="t",
        author_login="a",
        clone_url="file:///x",
        head_ref="b",
        head_sha="s" * 40,
        base_ref="main",
        state="open",
        now=NOW,
    )


def comment(comment_id: int, body: str = "fix") -> NewComment:
    return NewComment(
        id=comment_id,
        kind="review_comment",
        body=body,
        author_login="rev",
        author_type="User",
        own=False,
        html_url=None,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        review_id=9,
        path="a.py",
        line=1,
        side="RIGHT",
        diff_hunk="@@",
        commit_id="s",
    )


async def test_concurrent_deliveries_of_one_comment_put_it_in_one_batch(db: Database) -> None:
    pr = await a_pr(db)
    await review_comments.store_comment(db, pr.id, comment(1), NOW)
    results = await asyncio.gather(
        *[
            review_batches.gather(
                db, pr.id, [("review_comment", 1)], now=NOW, debounce_s=30, max_wait_s=300
            )
            for _ in range(5)
        ]
    )
    assert sorted(added for _, added in results) == [0, 0, 0, 0, 1]
    assert await db.fetchval("SELECT COUNT(*) FROM review_batch_items") == 1
    assert await db.fetchval("SELECT COUNT(*) FROM review_batches") == 1


async def test_an_edit_is_a_new_version_for_the_next_batch(db: Database) -> None:
    pr = await a_pr(db)
    await review_comments.store_comment(db, pr.id, comment(1), NOW)
    batch, _ = await review_batches.gather(
        db, pr.id, [("review_comment", 1)], now=NOW, debounce_s=30, max_wait_s=300
    )
    assert batch is not None
    await review_batches.claim(db, batch.id, head_sha="s" * 40, now=NOW)
    _, change = await review_comments.store_comment(db, pr.id, comment(1, "fix it twice"), NOW)
    assert change == "edited"
    second, added = await review_batches.gather(
        db, pr.id, [("review_comment", 1)], now=NOW, debounce_s=30, max_wait_s=300
    )
    assert added == 1 and second is not None and second.id != batch.id
    (snapshot,) = await review_batches.batch_items(db, batch.id)
    assert snapshot.body == "fix"  # taken when the first batch started


async def test_a_reply_intent_is_kept_once_per_comment_and_iteration(db: Database) -> None:
    pr = await a_pr(db)
    first, new = await review_replies.record_intent(
        db,
        pr_id=pr.id,
        key="reply:1:review_comment:5",
        kind="thread",
        body="x",
        now=NOW,
        iteration_id=1,
        comment_kind="review_comment",
        comment_id=5,
    )
    again, new_again = await review_replies.record_intent(
        db,
        pr_id=pr.id,
        key="reply:1:review_comment:5",
        kind="thread",
        body="y",
        now=NOW,
        iteration_id=1,
        comment_kind="review_comment",
        comment_id=5,
    )
    assert new and not new_again and again.id == first.id and again.body == "x"
    other_key, _ = await review_replies.record_intent(
        db,
        pr_id=pr.id,
        key="another-key",
        kind="thread",
        body="z",
        now=NOW,
        iteration_id=1,
        comment_kind="review_comment",
        comment_id=5,
    )
    assert other_key.id == first.id  # the (iteration, comment) key holds too


async def test_a_check_run_is_recorded_as_creating_before_its_id_and_keyed_anew_each_time(
    db: Database,
) -> None:
    pr = await a_pr(db)
    await review_comments.store_comment(db, pr.id, comment(1), NOW)
    batch, _ = await review_batches.gather(
        db, pr.id, [("review_comment", 1)], now=NOW, debounce_s=30, max_wait_s=300
    )
    assert batch is not None and batch.check_run_creating is None
    assert await review_batches.begin_check_run(db, batch.id, "a" * 40) == f"{batch.id}.1"
    begun = await review_batches.get_batch(db, batch.id)
    assert begun is not None and begun.check_run_creating == (f"{batch.id}.1", "a" * 40)
    await review_batches.set_check_run(db, batch.id, 77, "a" * 40)
    stored = await review_batches.get_batch(db, batch.id)
    assert stored is not None and stored.check_run_creating is None
    await review_batches.set_check_run(db, batch.id, None, None)
    cleared = await review_batches.get_batch(db, batch.id)
    assert cleared is not None and cleared.check_run_creating is None
    assert await review_batches.begin_check_run(db, batch.id, "b" * 40) == f"{batch.id}.2"
