"""Answering a turn's tool_use blocks: run each call, recorded and published, or pause for a person.

Each call is validated against its tool's schema, recorded in tool_calls (`started`, then
`completed` with its result) and published (tool_call_started, tool_call_completed); each file it
wrote is recorded in file_changes and published (file_changed). A call the model asked for before
a crash or a pause and that already ran is answered from tool_calls, never run twice. Every
failure of a tool becomes a tool error for the model, never a crash of the step.

request_clarification is answered here too: the question is stored and published
(clarification_requested) and the step pauses, until a person's answer becomes the call's result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.agents import tools as agent_tools
from bot.agents.events import (
    ClarificationRequested,
    FileChanged,
    ToolCallCompleted,
    ToolCallStarted,
)
from bot.agents.messages import capped, tool_result_block
from bot.agents.sandbox import BashPolicy, PathRefused
from bot.agents.step import RunScope
from bot.agents.tool_registry import Tool, ToolContext, ToolResult
from bot.clock import Clock
from bot.events.bus import EventBus
from storage import clarifications, tool_calls
from storage.clarifications import ClarificationStatus
from storage.database import Database
from storage.tool_calls import ChangeType, ToolCallStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingClarification:
    """The turn asked a person something; the step waits for this question's answer."""

    clarification_id: int


class ToolCaller:
    """Runs the tool calls of one run of a step, with the tools chosen for it."""

    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        bash_policy: BashPolicy,
        tools: dict[str, Tool],
        scope: RunScope,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.bash_policy = bash_policy
        self.tools = tools
        self.scope = scope

    async def answer(
        self, uses: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | PendingClarification:
        """The tool_result blocks for the turn's calls, or the clarification pending."""
        results: list[dict[str, Any]] = []
        pending: PendingClarification | None = None
        for use in uses:
            if use["name"] == agent_tools.CLARIFICATION_TOOL:
                answer = await self.clarification(use)
                if isinstance(answer, PendingClarification):
                    pending = pending or answer
                else:
                    results.append(tool_result_block(use["id"], answer))
                continue
            results.append(tool_result_block(use["id"], await self.call_tool(use)))
        return pending if pending is not None else results

    async def clarification(self, use: dict[str, Any]) -> ToolResult | PendingClarification:
        """The person's answer when there is one, else the question stored and pending."""
        tool = self.tools.get(agent_tools.CLARIFICATION_TOOL)
        problem = (
            f"unknown tool {use['name']}" if tool is None else tool.validation_error(use["input"])
        )
        if problem is not None:
            return ToolResult(problem, is_error=True)
        scope = self.scope
        question = use["input"]["question"]
        choices = use["input"].get("choices")
        asked, new = await clarifications.ask(
            self.db,
            session_id=scope.session_id,
            tool_use_id=use["id"],
            stream=scope.context.stream,
            question=question,
            choices=choices,
            now=self.clock.now(),
        )
        if asked.status is ClarificationStatus.ANSWERED:
            return ToolResult(f"A person answered: {asked.answer}")
        if new:
            requested = ClarificationRequested(
                clarification_id=asked.id,
                question=question,
                choices=choices,
                run_id=scope.run_id,
                agent=scope.agent,
                step_id=scope.context.step_id,
            )
            await self.bus.publish(scope.context.stream, requested)
        return PendingClarification(asked.id)

    async def call_tool(self, use: dict[str, Any]) -> ToolResult:
        """Run one call (or reuse its stored result), recorded and published."""
        scope, name, arguments = self.scope, use["name"], use["input"]
        done = await tool_calls.find(self.db, scope.session_id, use["id"])
        if done is not None and done.status is ToolCallStatus.COMPLETED:
            # The model asked for this call before a crash or pause and it ran: reuse it.
            return ToolResult(done.result or "", is_error=done.is_error)
        call_id = await tool_calls.start(
            self.db,
            run_id=scope.run_id,
            session_id=scope.session_id,
            tool_use_id=use["id"],
            tool=name,
            arguments=arguments,
            now=self.clock.now(),
        )
        started = ToolCallStarted(
            call_id=call_id,
            tool=name,
            arguments=capped(arguments),
            run_id=scope.run_id,
            agent=scope.agent,
        )
        await self.bus.publish(scope.context.stream, started)
        began = self.clock.monotonic()
        result = await self.execute(name, arguments, call_id)
        duration_ms = round((self.clock.monotonic() - began) * 1000, 3)
        await self.record_result(call_id, name, result, duration_ms)
        return result

    async def record_result(
        self, call_id: int, name: str, result: ToolResult, duration_ms: float
    ) -> None:
        error = result.content if result.is_error else None
        await tool_calls.complete(
            self.db,
            call_id,
            result=result.content,
            is_error=result.is_error,
            error=error,
            duration_ms=duration_ms,
            now=self.clock.now(),
        )
        completed = ToolCallCompleted(
            call_id=call_id,
            tool=name,
            result=capped(result.content),
            duration_ms=duration_ms,
            run_id=self.scope.run_id,
            error=None if error is None else capped(error),
        )
        await self.bus.publish(self.scope.context.stream, completed)

    async def execute(self, name: str, arguments: Any, call_id: int) -> ToolResult:
        """Run one call; every failure becomes a tool error for the model, never a crash."""
        tool = self.tools.get(name)
        if tool is None:
            available = ", ".join(sorted(self.tools))
            return ToolResult(f"unknown tool {name!r}; available: {available}", is_error=True)
        problem = tool.validation_error(arguments)
        if problem is not None:
            return ToolResult(problem, is_error=True)
        if tool.handler is None:
            return ToolResult("recorded")  # report_output: the arguments are the output

        async def file_changed(path: str, change_type: ChangeType, diff: str) -> None:
            await self.record_file_change(call_id, path, change_type, diff)

        tool_context = ToolContext(
            worktree=self.scope.context.worktree,
            bash_policy=self.bash_policy,
            file_changed=file_changed,
            sandbox=self.scope.context.sandbox,
        )
        try:
            return await tool.handler(arguments, tool_context)
        except PathRefused as refused:
            return ToolResult(f"refused: {refused}", is_error=True)
        except Exception as error:
            log.exception("tool %s failed in %s", name, self.scope.context.session_key)
            return ToolResult(f"{name} failed: {type(error).__name__}: {error}", is_error=True)

    async def record_file_change(
        self, call_id: int, path: str, change_type: ChangeType, diff: str
    ) -> None:
        await tool_calls.record_file_change(
            self.db,
            run_id=self.scope.run_id,
            tool_call_id=call_id,
            path=path,
            change_type=change_type,
            diff=diff,
            now=self.clock.now(),
        )
        changed = FileChanged(
            path=path, change_type=change_type, run_id=self.scope.run_id, call_id=call_id
        )
        await self.bus.publish(self.scope.context.stream, changed)
