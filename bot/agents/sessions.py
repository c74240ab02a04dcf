"""PipelineSession: a step's conversation, persisted in claude_sessions, append-only.

Every message (the task, each assistant turn, each batch of tool results) is stored as it is
added, so a pause, a crash or a restart continues from the stored history: the next request
carries exactly the messages the model already saw, in the same bytes, which is also what keeps
the prompt cache warm. Messages are never edited; a turn that broke mid-stream is not stored
here (agent_interruptions keeps it).

Across steps, the pipeline's context is the final text and reported output of its completed
steps (`pipeline_context`), which later steps get in their system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from storage import claude_sessions
from storage.agent_runs import RunStatus
from storage.claude_sessions import ClaudeSession
from storage.database import Database


@dataclass(frozen=True, slots=True)
class EarlierStep:
    agent: str
    final_text: str | None
    output: Any


class PipelineSession:
    def __init__(
        self, db: Database, clock: Clock, record: ClaudeSession, messages: list[dict[str, Any]]
    ) -> None:
        self.db = db
        self.clock = clock
        self.record = record
        self.messages = messages
        self.restored = bool(messages)

    @classmethod
    async def open(
        cls,
        db: Database,
        clock: Clock,
        *,
        session_key: str,
        agent: str,
        model: str,
        pipeline_id: int | None = None,
        step_id: int | None = None,
        pr: str | None = None,
    ) -> PipelineSession:
        """The session with this key (created on first use) and its stored messages."""
        record = await claude_sessions.create(
            db,
            session_key=session_key,
            agent=agent,
            model=model,
            pipeline_id=pipeline_id,
            step_id=step_id,
            pr=pr,
            now=clock.now(),
        )
        stored = await claude_sessions.messages(db, record.id)
        return cls(db, clock, record, [{"role": m.role, "content": m.content} for m in stored])

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def last_message(self) -> dict[str, Any] | None:
        return self.messages[-1] if self.messages else None

    async def append(self, role: str, content: Any) -> None:
        """Store one message at the end of the conversation (committed on return)."""
        await claude_sessions.append(
            self.db, self.record.id, len(self.messages), role, content, now=self.clock.now()
        )
        self.messages.append({"role": role, "content": content})

    async def finish(self, status: RunStatus, *, final_text: str | None, output: Any) -> None:
        await claude_sessions.finish(
            self.db,
            self.record.id,
            status=status,
            final_text=final_text,
            output=output,
            now=self.clock.now(),
        )

    async def pipeline_context(self) -> list[EarlierStep]:
        """The completed steps of this session's pipeline before this one."""
        if self.record.pipeline_id is None:
            return []
        done = await claude_sessions.completed_in_pipeline(self.db, self.record.pipeline_id)
        return [
            EarlierStep(step.agent, step.final_text, step.output)
            for step in done
            if step.id != self.record.id
        ]
