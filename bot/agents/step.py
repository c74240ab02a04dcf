"""What a step is given (AgentContext) and what it gives back (StepResult).

`AgentRunner.run_step(agent_name, context)` takes an AgentContext and returns a StepResult
whose `status` is how the run ended (storage.agent_runs.RunStatus: completed,
paused_for_clarification, budget_stopped, failed, interrupted) and, when it failed or was
interrupted, `failure`, the typed kind of what stopped it (bot/agents/failures.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.agents.failures import FailureKind
from bot.agents.tool_registry import Tool
from bot.isolation.sandbox import SandboxScope
from storage.agent_runs import RunStatus


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What a step is about and where it runs; the caller owns these values.

    `session_key` names the conversation: run_step with the same key continues it (after a
    pause, a crash, a budget stop). `stream` is the event stream the step publishes on.
    """

    session_key: str
    worktree: Path
    task: str
    stream: str
    repository_context: str = ""
    pipeline_id: int | None = None
    step_id: int | None = None
    pr: str | None = None
    budget_usd: float | None = None  # replaces the agent's max_cost_usd for this step
    pipeline_budget_usd: float | None = None
    # Stop the step (`loop_stopped`) when one tool call with the same arguments comes this
    # many times in its conversation; None: no such check.
    repeat_limit: int | None = None
    extra_tools: tuple[Tool, ...] = ()
    # The tools this step may use instead of the agent's own list (a pipeline phase's
    # `tools`); extra_tools not named here are left out. None: the agent's list.
    tool_names: tuple[str, ...] | None = None
    # The worktree's ports, caches and sandbox paths for bash, when the WorktreeManager made
    # the worktree: `await manager.command_sandbox(row)`.
    sandbox: SandboxScope | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    status: RunStatus
    final_text: str
    output: Any
    cost_usd: float  # this run
    step_cost_usd: float  # every run of the step
    run_id: int
    session_id: int
    turns: int
    reason: str | None = None
    error: str | None = None
    clarification_id: int | None = None
    failure: FailureKind | None = None  # with failed and interrupted: what stopped the run


@dataclass(frozen=True, slots=True)
class RunScope:
    """Which run of which step: what every record and event of the run names."""

    run_id: int
    session_id: int
    agent: str
    context: AgentContext
