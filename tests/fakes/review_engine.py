"""`ScriptedEngine`: a ReviewEngine test double for the review machinery's own tests (batches,
replies, check runs, commands, caps), and the floor of bench/review_latency.py. The real engine,
bot/reviews/agent_engine.py, is tested end to end in tests/test_reviews_engine.py.

It records every batch it is given and answers from a script: a function of the batch returning
an `EngineResult`. By default every comment is reported `fixed` in one made-up commit. A test can
hold a run open (`hold()` / `release()`) to send events while the engine is working.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.reviews.engine import (
    CommentOutcome,
    EngineResult,
    EngineStatus,
    OutcomeKind,
    ReviewBatch,
)

Script = Callable[[ReviewBatch], EngineResult]


def fake_sha(batch: ReviewBatch) -> str:
    return hashlib.sha1(f"batch-{batch.batch_id}-{batch.head_sha}".encode()).hexdigest()


def fix_everything(batch: ReviewBatch) -> EngineResult:
    sha = fake_sha(batch)
    return EngineResult(
        EngineStatus.COMPLETED,
        tuple(
            CommentOutcome(c.comment_id, OutcomeKind.FIXED, commit_sha=sha) for c in batch.comments
        ),
        commit_sha=sha,
        tests_summary="12 passed",
        cost_usd=0.25,
    )


@dataclass
class ScriptedEngine:
    script: Script = fix_everything
    batches: list[ReviewBatch] = field(default_factory=list)
    _gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def hold(self) -> None:
        """Runs from now on wait for `release()` before answering."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    async def work(self, batch: ReviewBatch) -> EngineResult:
        self.batches.append(batch)
        self.started.set()
        if self._gate is not None:
            await self._gate.wait()
        return self.script(batch)
