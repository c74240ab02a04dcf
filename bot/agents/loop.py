"""The tool-use loop: BaseAgent runs one step of an agent in a worktree (DESIGN.md, agents).

A turn is one streamed Messages API call. Its text goes to the TokenCoalescer (token frames);
its tool_use blocks are validated against each tool's schema and run, each recorded in
tool_calls and published (tool_call_started, tool_call_completed), each file written recorded
in file_changes and published (file_changed); the results go back as the next user message.
The loop ends when the model ends its turn, or a limit (turns, dollars) is reached, or the
model asks a person something (request_clarification), or the API keeps failing.

Everything the model saw is in the PipelineSession, appended only; a run picks up wherever
the stored conversation stands: a fresh task, tool calls still to answer (a crash between the
turn and its results: calls already completed are reused, not run twice), an answered
clarification. A turn whose stream breaks is never half-used: what arrived is recorded in
agent_interruptions and the turn is asked again from the stored history.

Prompt caching: the tool definitions, the system prompt (agent prompt, repository context,
earlier steps of the pipeline) and the conversation so far form the prefix, with three
cache_control breakpoints (last tool, last system block, last message): within the API's
four, and since the history only grows, every turn reads the previous turn's prefix.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic

from bot.agents import tools as agent_tools
from bot.agents.costs import CostTracker, Usage
from bot.agents.definitions import AgentDefinition
from bot.agents.sandbox import BashPolicy, PathRefused
from bot.agents.sessions import EarlierStep, PipelineSession
from bot.agents.tokens import TokenCoalescer, TokenSequence
from bot.agents.tools import Tool, ToolContext, ToolRegistry, ToolResult
from bot.clock import Clock
from bot.events.bus import EventBus
from bot.isolation.sandbox import SandboxScope
from storage import agent_runs, clarifications, tool_calls
from storage.database import Database

log = logging.getLogger(__name__)

COMPLETED = "completed"
PAUSED = "paused_for_clarification"
BUDGET_STOPPED = "budget_stopped"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (COMPLETED, PAUSED, BUDGET_STOPPED, FAILED, INTERRUPTED)

EVENT_TEXT_CAP = 2000
CACHE_CONTROL = {"type": "ephemeral"}


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
    extra_tools: tuple[Tool, ...] = ()
    # The worktree's ports, caches and sandbox paths for bash, when the WorktreeManager made
    # the worktree: `await manager.command_sandbox(row)`.
    sandbox: SandboxScope | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    status: str
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


@dataclass
class AgentRuntime:
    """The shared parts every BaseAgent uses, built once by the AgentRunner."""

    db: Database
    bus: EventBus
    clock: Clock
    client: anthropic.AsyncAnthropic
    tools: ToolRegistry
    costs: CostTracker
    token_sequence: TokenSequence
    bash_policy: BashPolicy = field(default_factory=BashPolicy)
    token_interval_s: float = 0.1
    token_ttl_s: float = 3600.0
    stream_retries: int = 2
    interruption_backoff_s: float = 1.0


@dataclass(frozen=True, slots=True)
class _Interrupted:
    reason: str
    tool_use_started: bool
    partial: list[dict[str, Any]]
    usage: Any = None  # what message_start (and any delta) billed before the break, if it came


class _TurnFailed(Exception):
    pass


def _billed_so_far(stream: Any) -> Any:
    """The usage of a stream that broke: message_start's input tokens and any output counted
    since, or None when it broke before message_start."""
    try:
        return stream.current_message_snapshot.usage
    except (AssertionError, AttributeError, RuntimeError):
        return None


def _capped(value: Any) -> Any:
    """Arguments as published: long strings cut (the full call is in tool_calls)."""
    if isinstance(value, str) and len(value) > EVENT_TEXT_CAP:
        return value[:EVENT_TEXT_CAP] + f"... [{len(value)} chars]"
    if isinstance(value, dict):
        return {key: _capped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_capped(item) for item in value]
    return value


def _block_dict(block: Any) -> dict[str, Any]:
    """A response content block as it goes back into the history (only the API's fields)."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped = block.model_dump(exclude_none=True)
    return dumped


def _tool_uses(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [block for block in content if block.get("type") == "tool_use"]


def _text_of(message: dict[str, Any] | None) -> str:
    if message is None:
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if block.get("type") == "text")


def _tool_result(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": result.content,
    }
    if result.is_error:
        block["is_error"] = True
    return block


class BaseAgent:
    """One agent definition at work. Subclass to shape the prompt (system_blocks, task_text)."""

    def __init__(self, definition: AgentDefinition, runtime: AgentRuntime) -> None:
        self.definition = definition
        self.runtime = runtime

    # -- the prompt -----------------------------------------------------------------------

    def system_blocks(self, context: AgentContext, earlier: list[EarlierStep]) -> list[str]:
        """The system prompt's parts, most stable first (they are the cached prefix)."""
        parts = [self.definition.system_prompt]
        if context.repository_context.strip():
            parts.append("Repository context:\n" + context.repository_context.strip())
        if earlier:
            lines = ["Earlier steps of this pipeline:"]
            for step in earlier:
                lines.append(f"## {step.agent}\n{(step.final_text or '').strip()}")
                if step.output is not None:
                    lines.append("Reported: " + json.dumps(step.output, sort_keys=True))
            parts.append("\n\n".join(lines))
        return parts

    def task_text(self, context: AgentContext) -> str:
        return context.task

    def select_tools(self, context: AgentContext) -> list[Tool]:
        registry = self.runtime.tools
        wanted = [name for name in self.definition.tools if name != agent_tools.REPORT_TOOL]
        chosen, missing = registry.select(wanted)
        if missing:
            log.warning(
                "agent %s: tools not available, left out: %s", self.definition.name, missing
            )
        names = {tool.name for tool in chosen}
        for tool in context.extra_tools:
            problem = agent_tools.schema_problem(tool.input_schema)
            if problem is not None:
                log.warning("tool %s left out: bad input schema: %s", tool.name, problem)
            elif tool.name not in names:
                chosen.append(tool)
        if agent_tools.REPORT_TOOL in self.definition.tools:
            report = agent_tools.report_tool(self.definition.output_schema)
            chosen = [tool for tool in chosen if tool.name != report.name] + [report]
        return chosen

    def build_request(
        self,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        system: list[str],
    ) -> dict[str, Any]:
        caching = self.definition.prompt_caching
        tool_definitions = [tool.definition() for tool in tools]
        system_blocks: list[dict[str, Any]] = [{"type": "text", "text": part} for part in system]
        sent = copy.deepcopy(messages)
        if caching:
            if tool_definitions:
                tool_definitions[-1]["cache_control"] = CACHE_CONTROL
            system_blocks[-1]["cache_control"] = CACHE_CONTROL
            last = sent[-1]
            if isinstance(last["content"], str):
                last["content"] = [{"type": "text", "text": last["content"]}]
            last["content"][-1]["cache_control"] = CACHE_CONTROL
        request: dict[str, Any] = {
            "model": self.definition.model,
            "max_tokens": self.definition.max_output_tokens,
            "system": system_blocks,
            "messages": sent,
        }
        if tool_definitions:
            request["tools"] = tool_definitions
        return request

    # -- the run ----------------------------------------------------------------------------

    async def run(self, context: AgentContext) -> StepResult:
        rt = self.runtime
        definition = self.definition
        session = await PipelineSession.open(
            rt.db,
            rt.clock,
            session_key=context.session_key,
            agent=definition.name,
            model=definition.model,
            pipeline_id=context.pipeline_id,
            step_id=context.step_id,
            pr=context.pr,
        )
        run = await agent_runs.start(
            rt.db,
            session_id=session.id,
            agent=definition.name,
            stream=context.stream,
            now=rt.clock.now(),
        )
        step = _Step(self, context, session, run.id)
        await rt.bus.publish(
            context.stream,
            "agent_step_started",
            {
                "run_id": run.id,
                "agent": definition.name,
                "session_key": context.session_key,
                "restored": session.restored,
            },
        )
        try:
            return await step.drive()
        except Exception as error:
            log.exception("agent %s step %s failed", definition.name, context.session_key)
            return await step.finish(FAILED, error=f"{type(error).__name__}: {error}")


class _Step:
    """The state of one run of a step (kept off BaseAgent so an agent can run many steps)."""

    def __init__(
        self, agent: BaseAgent, context: AgentContext, session: PipelineSession, run_id: int
    ) -> None:
        self.agent = agent
        self.rt = agent.runtime
        self.definition = agent.definition
        self.context = context
        self.session = session
        self.run_id = run_id
        self.run_cost = 0.0
        self.turns = 0
        self.tools = {tool.name: tool for tool in agent.select_tools(context)}
        self.coalescer = TokenCoalescer(
            self.rt.token_sequence,
            self.rt.bus,
            self.rt.clock,
            context.stream,
            interval_s=self.rt.token_interval_s,
            ttl_s=self.rt.token_ttl_s,
        )

    async def drive(self) -> StepResult:
        context, session = self.context, self.session
        if not session.messages:
            task = self.agent.task_text(context)
            await session.append("user", [{"type": "text", "text": task}])
        system = self.agent.system_blocks(context, await session.pipeline_context())
        interruptions = 0
        while True:
            last = session.last_message
            assert last is not None
            if last["role"] == "assistant":
                uses = _tool_uses(last)
                if not uses:
                    return await self.finish(COMPLETED)
                answered = await self.answer_tool_uses(uses)
                if isinstance(answered, int):
                    return await self.finish(
                        PAUSED, reason="waiting for a person's answer", clarification_id=answered
                    )
                await session.append("user", answered)
            stop = await self.limit_reached()
            if stop is not None:
                return await self.finish(BUDGET_STOPPED, reason=stop)
            request = self.agent.build_request(session.messages, list(self.tools.values()), system)
            try:
                outcome = await self.stream_turn(request)
            except _TurnFailed as failure:
                return await self.finish(FAILED, error=str(failure))
            if isinstance(outcome, _Interrupted):
                interruptions += 1
                await self.record_interruption(outcome)
                if outcome.usage is not None:  # the API billed the input of the broken turn
                    await self.record_cost(outcome)
                if interruptions > self.rt.stream_retries:
                    return await self.finish(
                        INTERRUPTED,
                        reason=f"the stream broke {interruptions} times: {outcome.reason}",
                    )
                await asyncio.sleep(self.rt.interruption_backoff_s * interruptions)
                continue
            self.turns += 1
            await self.record_cost(outcome)
            await session.append("assistant", [_block_dict(block) for block in outcome.content])

    # -- limits -----------------------------------------------------------------------------

    async def limit_reached(self) -> str | None:
        definition, context = self.definition, self.context
        turns_taken = sum(1 for m in self.session.messages if m["role"] == "assistant")
        if turns_taken >= definition.max_turns:
            return f"turn limit reached ({definition.max_turns} turns)"
        budget = context.budget_usd if context.budget_usd is not None else definition.max_cost_usd
        spent = (await self.rt.costs.step_total(self.session.id)).cost_usd
        if spent >= budget:
            return f"step budget reached: ${spent:.4f} spent of ${budget:.4f}"
        if context.pipeline_id is not None and context.pipeline_budget_usd is not None:
            pipeline_spent = (await self.rt.costs.pipeline_total(context.pipeline_id)).cost_usd
            if pipeline_spent >= context.pipeline_budget_usd:
                return (
                    f"pipeline budget reached: ${pipeline_spent:.4f} spent of "
                    f"${context.pipeline_budget_usd:.4f}"
                )
        return None

    # -- one streamed turn --------------------------------------------------------------------

    async def stream_turn(self, request: dict[str, Any]) -> Any:
        """The turn's final Message, or _Interrupted; raises _TurnFailed when the API refuses."""
        partial: list[dict[str, Any]] = []
        tool_use_started = False
        try:
            async with self.rt.client.messages.stream(**request) as stream:
                events = stream.__aiter__()
                while True:
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as error:  # the connection or the stream broke
                        await self.coalescer.flush()
                        return _Interrupted(
                            f"{type(error).__name__}: {error}",
                            tool_use_started,
                            partial,
                            _billed_so_far(stream),
                        )
                    if event.type == "text":
                        await self.coalescer.add(event.text)
                    elif event.type == "content_block_start":
                        partial.append(_block_dict(event.content_block))
                        if event.content_block.type == "tool_use":
                            tool_use_started = True
                    elif event.type == "content_block_stop":
                        await self.coalescer.flush()
                        if partial:
                            partial[-1] = _block_dict(event.content_block)
                await self.coalescer.flush()
                snapshot = stream.current_message_snapshot
                if snapshot.stop_reason is None:
                    return _Interrupted(
                        "the stream ended before message_stop",
                        tool_use_started,
                        partial,
                        snapshot.usage,
                    )
                return await stream.get_final_message()
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as error:
            await self.coalescer.flush()
            raise _TurnFailed(f"{type(error).__name__}: {error}") from error

    async def record_interruption(self, interrupted: _Interrupted) -> None:
        log.warning(
            "agent %s (%s): turn interrupted (%s)",
            self.definition.name,
            self.context.session_key,
            interrupted.reason,
        )
        await agent_runs.record_interruption(
            self.rt.db,
            run_id=self.run_id,
            turn=self.turns + 1,
            reason=interrupted.reason,
            tool_use_started=interrupted.tool_use_started,
            partial=interrupted.partial,
            now=self.rt.clock.now(),
        )
        await self.rt.bus.publish(
            self.context.stream,
            "agent_turn_interrupted",
            {
                "run_id": self.run_id,
                "agent": self.definition.name,
                "reason": interrupted.reason,
                "tool_use_started": interrupted.tool_use_started,
            },
        )

    async def record_cost(self, message: Any) -> None:
        call = await self.rt.costs.record_call(
            run_id=self.run_id,
            session_id=self.session.id,
            pipeline_id=self.context.pipeline_id,
            pr=self.context.pr,
            model=self.definition.model,
            usage=Usage.from_api(message.usage),
        )
        self.run_cost += call.cost_usd

    # -- tools ------------------------------------------------------------------------------

    async def answer_tool_uses(self, uses: list[dict[str, Any]]) -> list[dict[str, Any]] | int:
        """The tool_result blocks for the turn's calls, or the id of a clarification pending."""
        results: list[dict[str, Any]] = []
        pending: int | None = None
        for use in uses:
            if use["name"] == agent_tools.CLARIFICATION_TOOL:
                answer = await self.clarification(use)
                if isinstance(answer, int):
                    pending = pending or answer
                else:
                    results.append(_tool_result(use["id"], answer))
                continue
            results.append(_tool_result(use["id"], await self.call_tool(use)))
        return pending if pending is not None else results

    async def clarification(self, use: dict[str, Any]) -> ToolResult | int:
        tool = self.tools.get(agent_tools.CLARIFICATION_TOOL)
        problem = (
            f"unknown tool {use['name']}" if tool is None else tool.validation_error(use["input"])
        )
        if problem is not None:
            return ToolResult(problem, is_error=True)
        question = use["input"]["question"]
        choices = use["input"].get("choices")
        asked, new = await clarifications.ask(
            self.rt.db,
            session_id=self.session.id,
            tool_use_id=use["id"],
            stream=self.context.stream,
            question=question,
            choices=choices,
            now=self.rt.clock.now(),
        )
        if asked.status == "answered":
            return ToolResult(f"A person answered: {asked.answer}")
        if new:
            data: dict[str, Any] = {
                "clarification_id": asked.id,
                "question": question,
                "choices": choices,
                "run_id": self.run_id,
                "agent": self.definition.name,
            }
            if self.context.step_id is not None:
                data["step_id"] = self.context.step_id
            await self.rt.bus.publish(self.context.stream, "clarification_requested", data)
        return asked.id

    async def call_tool(self, use: dict[str, Any]) -> ToolResult:
        rt, name, arguments = self.rt, use["name"], use["input"]
        done = await tool_calls.find(rt.db, self.session.id, use["id"])
        if done is not None and done.status == "completed":
            # The model asked for this call before a crash or pause and it ran: reuse it.
            return ToolResult(done.result or "", is_error=done.is_error)
        call_id = await tool_calls.start(
            rt.db,
            run_id=self.run_id,
            session_id=self.session.id,
            tool_use_id=use["id"],
            tool=name,
            arguments=arguments,
            now=rt.clock.now(),
        )
        await rt.bus.publish(
            self.context.stream,
            "tool_call_started",
            {
                "call_id": call_id,
                "tool": name,
                "arguments": _capped(arguments),
                "run_id": self.run_id,
                "agent": self.definition.name,
            },
        )
        started = rt.clock.monotonic()
        result = await self.execute(name, arguments, call_id)
        duration_ms = round((rt.clock.monotonic() - started) * 1000, 3)
        error = result.content if result.is_error else None
        await tool_calls.complete(
            rt.db,
            call_id,
            result=result.content,
            is_error=result.is_error,
            error=error,
            duration_ms=duration_ms,
            now=rt.clock.now(),
        )
        completed: dict[str, Any] = {
            "call_id": call_id,
            "tool": name,
            "result": _capped(result.content),
            "duration_ms": duration_ms,
            "run_id": self.run_id,
        }
        if error is not None:
            completed["error"] = _capped(error)
        await rt.bus.publish(self.context.stream, "tool_call_completed", completed)
        return result

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

        async def file_changed(path: str, change_type: str, diff: str) -> None:
            await tool_calls.record_file_change(
                self.rt.db,
                run_id=self.run_id,
                tool_call_id=call_id,
                path=path,
                change_type=change_type,
                diff=diff,
                now=self.rt.clock.now(),
            )
            await self.rt.bus.publish(
                self.context.stream,
                "file_changed",
                {
                    "path": path,
                    "change_type": change_type,
                    "run_id": self.run_id,
                    "call_id": call_id,
                },
            )

        tool_context = ToolContext(
            worktree=self.context.worktree,
            bash_policy=self.rt.bash_policy,
            file_changed=file_changed,
            sandbox=self.context.sandbox,
        )
        try:
            return await tool.handler(arguments, tool_context)
        except PathRefused as refused:
            return ToolResult(f"refused: {refused}", is_error=True)
        except Exception as error:
            log.exception("tool %s failed in %s", name, self.context.session_key)
            return ToolResult(f"{name} failed: {type(error).__name__}: {error}", is_error=True)

    # -- the end ----------------------------------------------------------------------------

    async def reported_output(self) -> Any:
        output = None
        for call in await tool_calls.for_session(self.rt.db, self.session.id):
            if call.tool == agent_tools.REPORT_TOOL and call.status == "completed":
                if not call.is_error:
                    output = call.arguments
        return output

    async def finish(
        self,
        status: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        clarification_id: int | None = None,
    ) -> StepResult:
        rt = self.rt
        await self.coalescer.flush()
        final_text = _text_of(self.session.last_message) if status == COMPLETED else ""
        output = await self.reported_output()
        step_cost = (await rt.costs.step_total(self.session.id)).cost_usd
        await self.session.finish(status, final_text=final_text or None, output=output)
        await agent_runs.finish(
            rt.db,
            self.run_id,
            status=status,
            reason=reason,
            error=error,
            turns=self.turns,
            cost_usd=self.run_cost,
            now=rt.clock.now(),
        )
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "agent": self.definition.name,
            "session_key": self.context.session_key,
            "status": status,
            "cost_usd": round(self.run_cost, 6),
            "step_cost_usd": round(step_cost, 6),
        }
        if reason is not None:
            data["reason"] = reason
        if error is not None:
            data["error"] = error
        await rt.bus.publish(self.context.stream, "agent_step_finished", data)
        log.info(
            "agent %s (%s) %s after %d turn(s), $%.4f%s",
            self.definition.name,
            self.context.session_key,
            status,
            self.turns,
            self.run_cost,
            f": {reason or error}" if (reason or error) else "",
        )
        return StepResult(
            status=status,
            final_text=final_text,
            output=output,
            cost_usd=self.run_cost,
            step_cost_usd=step_cost,
            run_id=self.run_id,
            session_id=self.session.id,
            turns=self.turns,
            reason=reason,
            error=error,
            clarification_id=clarification_id,
        )
