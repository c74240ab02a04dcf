"""The message types the agent runtime emits (docs/design.md, Events; bot.events.message).

A step publishes on its context's stream: agent_step_started, then per tool call
tool_call_started / file_changed / tool_call_completed, agent_turn_interrupted when a stream
breaks, clarification_requested when the model asks a person, and agent_step_finished. Its
streamed text goes out as transient `token` frames. Long tool arguments and results are cut
for the event (the full text is in tool_calls).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from bot.events.message import Event
from storage.agent_runs import RunStatus
from storage.token_blocks import BlockState
from storage.tool_calls import ChangeType


class ToolCallStarted(Event):
    """An agent called a tool."""

    type_name: ClassVar[str] = "tool_call_started"
    concern: ClassVar[str] = "agents"
    call_id: int
    tool: str
    arguments: Any
    run_id: int
    agent: str


class ToolCallCompleted(Event):
    """A tool call finished."""

    type_name: ClassVar[str] = "tool_call_completed"
    concern: ClassVar[str] = "agents"
    call_id: int
    tool: str
    result: str
    duration_ms: float
    run_id: int
    error: str | None = None


class FileChanged(Event):
    """An agent wrote a file."""

    type_name: ClassVar[str] = "file_changed"
    concern: ClassVar[str] = "agents"
    path: str
    change_type: ChangeType
    run_id: int
    call_id: int


class Token(Event):
    """Streamed agent text, coalesced (not kept in events).

    `block` is the seq of the first frame of its content block: a client that was sent a
    token_catchup of that block replaces the block's text with it."""

    type_name: ClassVar[str] = "token"
    concern: ClassVar[str] = "agents"
    seq: int
    text: str
    block: int | None = None


class SnapshotText(msgspec.Struct):
    """A block's frames from its first through `through_seq`, merged."""

    through_seq: int
    text: str


class TailText(msgspec.Struct):
    """One frame after the snapshot."""

    seq: int
    text: str


class TokenBlockCatchup(Event):
    """A stream's latest content block for a resuming WebSocket client, after the replay:
    snapshot, tail, state (running, completed or interrupted); live token frames follow.

    Its text is the snapshot's then the tail's, and covers seq `block` through `last_seq`;
    live `token` frames at or below `last_seq` are not sent (not kept in events)."""

    type_name: ClassVar[str] = "token_catchup"
    concern: ClassVar[str] = "agents"
    stream: str
    block: int
    state: BlockState
    snapshot: SnapshotText
    tail: list[TailText]
    last_seq: int


class AgentStepStarted(Event):
    """An agent step started, or continued its stored conversation."""

    type_name: ClassVar[str] = "agent_step_started"
    concern: ClassVar[str] = "agents"
    run_id: int
    agent: str
    session_key: str
    restored: bool


class AgentStepFinished(Event):
    """An agent step ended: completed, paused_for_clarification, budget_stopped, failed or
    interrupted."""

    type_name: ClassVar[str] = "agent_step_finished"
    concern: ClassVar[str] = "agents"
    run_id: int
    agent: str
    session_key: str
    status: RunStatus
    cost_usd: float
    step_cost_usd: float
    reason: str | None = None
    error: str | None = None


class AgentTurnInterrupted(Event):
    """A streamed turn broke; it was recorded and is asked again from the stored history."""

    type_name: ClassVar[str] = "agent_turn_interrupted"
    concern: ClassVar[str] = "agents"
    run_id: int
    agent: str
    reason: str
    tool_use_started: bool


class ClarificationRequested(Event):
    """An agent asked a person a question; its step waits."""

    type_name: ClassVar[str] = "clarification_requested"
    concern: ClassVar[str] = "agents"
    clarification_id: int
    question: str
    run_id: int
    agent: str
    choices: list[str] | None = None
    step_id: int | None = None


class ClarificationAnswered(Event):
    """A person answered; the step resumes."""

    type_name: ClassVar[str] = "clarification_answered"
    concern: ClassVar[str] = "agents"
    clarification_id: int
    answer: str
    session_id: int
    answered_by: str | None = None
