"""The tool-use loop: BaseAgent runs one step of an agent in a worktree (docs/agents.md).

A turn is one streamed Messages API call (bot/agents/turns.py): its text goes out as token
frames, its tool_use blocks are answered by the ToolCaller (bot/agents/tool_use.py: validated,
run, recorded and published) and the results go back as the next user message. The loop ends
when the model ends its turn, or a limit (turns, dollars) is reached, or the model asks a person
something (request_clarification), or the API keeps failing.

Everything the model saw is in the PipelineSession, appended only; a run picks up wherever
the stored conversation stands: a fresh task, tool calls still to answer (a crash between the
turn and its results: calls already completed are reused, not run twice), an answered
clarification. A turn whose stream breaks is never half-used: what arrived is recorded in
agent_interruptions and the turn is asked again from the stored history, up to
`stream_retries` breaks in a run (counted over the whole run, with a backoff growing by
`interruption_backoff_s` each time, and the limits checked again before each new ask).

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
from typing import Any

import anthropic

from bot.agents import tools as agent_tools
from bot.agents.costs import CostTracker, Usage
from bot.agents.definitions import AgentDefinition
from bot.agents.events import AgentStepFinished, AgentStepStarted, AgentTurnInterrupted
from bot.agents.failures import FailureKind, described, failure_kind
from bot.agents.messages import block_dict, repeated_call, text_of, tool_uses
from bot.agents.sandbox import BashPolicy
from bot.agents.sessions import EarlierStep, PipelineSession
from bot.agents.step import AgentContext, RunScope, StepResult
from bot.agents.tokens import SNAPSHOT_EVERY_S, TokenCoalescer, TokenSequence
from bot.agents.tool_registry import Tool, ToolRegistry, schema_problem
from bot.agents.tool_use import PendingClarification, ToolCaller
from bot.agents.turns import Interrupted, TurnFailed, TurnStreamer
from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS
from bot.events.bus import EventBus
from storage import agent_runs, tool_calls
from storage.agent_runs import RunStatus
from storage.database import Database
from storage.token_blocks import BlockState
from storage.tool_calls import ToolCallStatus

log = logging.getLogger(__name__)

CACHE_CONTROL = {"type": "ephemeral"}


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
    token_ttl_s: float = DEFAULT_SETTINGS.token_buffer_ttl
    token_snapshot_every_s: float = SNAPSHOT_EVERY_S
    stream_retries: int = 2
    interruption_backoff_s: float = 1.0


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
        named = self.definition.tools if context.tool_names is None else context.tool_names
        wanted = [name for name in named if name != agent_tools.REPORT_TOOL]
        extras = {tool.name for tool in context.extra_tools}
        chosen, missing = registry.select(name for name in wanted if name not in extras)
        if missing:
            log.warning(
                "agent %s: tools not available, left out: %s", self.definition.name, missing
            )
        names = {tool.name for tool in chosen}
        for tool in context.extra_tools:
            problem = schema_problem(tool.input_schema)
            if problem is not None:
                log.warning("tool %s left out: bad input schema: %s", tool.name, problem)
            elif tool.name not in names and (
                context.tool_names is None or tool.name in context.tool_names
            ):
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
        step = _Step(self, RunScope(run.id, session.id, definition.name, context), session)
        started = AgentStepStarted(
            run_id=run.id,
            agent=definition.name,
            session_key=context.session_key,
            restored=session.restored,
        )
        try:
            await rt.bus.publish(context.stream, started)
            return await step.drive()
        except asyncio.CancelledError:
            # A pause, a shutdown or the caller's time limit: the run is recorded interrupted
            # (not left `running`), and the same session key continues the conversation from
            # its last complete turn. A failure to record it must not hide the cancellation.
            try:
                await asyncio.shield(step.finish(RunStatus.INTERRUPTED, reason=CANCELLED))
            except Exception:
                log.exception(
                    "agent %s step %s: recording the cancel failed",
                    definition.name,
                    context.session_key,
                )
            raise
        except Exception as error:
            log.exception("agent %s step %s failed", definition.name, context.session_key)
            return await step.finish(
                RunStatus.FAILED, error=described(error), failure=failure_kind(error)
            )


CANCELLED = "cancelled: paused, stopped or out of time"


class _Step:
    """The state of one run of a step (kept off BaseAgent so an agent can run many steps)."""

    def __init__(self, agent: BaseAgent, scope: RunScope, session: PipelineSession) -> None:
        self.agent = agent
        self.rt = agent.runtime
        self.definition = agent.definition
        self.scope = scope
        self.context = scope.context
        self.session = session
        self.run_cost = 0.0
        self.turns = 0
        self.interruptions = 0  # over the whole run, not per turn
        self.tools = {tool.name: tool for tool in agent.select_tools(self.context)}
        self.coalescer = TokenCoalescer(
            self.rt.token_sequence,
            self.rt.bus,
            self.rt.clock,
            self.context.stream,
            interval_s=self.rt.token_interval_s,
            ttl_s=self.rt.token_ttl_s,
            snapshot_every_s=self.rt.token_snapshot_every_s,
        )
        self.streamer = TurnStreamer(self.rt.client, self.coalescer)
        self.tool_caller = ToolCaller(
            db=self.rt.db,
            bus=self.rt.bus,
            clock=self.rt.clock,
            bash_policy=self.rt.bash_policy,
            tools=self.tools,
            scope=scope,
        )

    async def drive(self) -> StepResult:
        session = self.session
        if not session.messages:
            task = self.agent.task_text(self.context)
            await session.append("user", [{"type": "text", "text": task}])
        system = self.agent.system_blocks(self.context, await session.pipeline_context())
        while True:
            ended = await self.answer_last_turn()
            if ended is not None:
                return ended
            stop = await self.limit_reached()
            if stop is not None:
                return await self.finish(RunStatus.BUDGET_STOPPED, reason=stop)
            request = self.agent.build_request(session.messages, list(self.tools.values()), system)
            try:
                outcome = await self.streamer.stream(request)
            except TurnFailed as failure:
                return await self.finish(RunStatus.FAILED, error=str(failure), failure=failure.kind)
            if isinstance(outcome, Interrupted):
                ended = await self.after_interruption(outcome)
                if ended is not None:
                    return ended
                continue
            self.turns += 1
            await self.record_cost(outcome.usage)
            await session.append("assistant", [block_dict(block) for block in outcome.content])

    async def answer_last_turn(self) -> StepResult | None:
        """Answer the stored assistant turn's tool calls (the step ends when it made none, or
        pauses when it asked a person); None when the model is to be asked next."""
        last = self.session.last_message
        if last is None or last["role"] != "assistant":
            return None
        uses = tool_uses(last)
        if not uses:
            return await self.finish(RunStatus.COMPLETED)
        limit = self.context.repeat_limit
        looping = repeated_call(self.session.messages, uses, limit) if limit else None
        if looping is not None:
            tool, count = looping
            return await self.finish(
                RunStatus.LOOP_STOPPED,
                reason=f"the same {tool} call with the same arguments came {count} times",
            )
        answered = await self.tool_caller.answer(uses)
        if isinstance(answered, PendingClarification):
            return await self.finish(
                RunStatus.PAUSED_FOR_CLARIFICATION,
                reason="waiting for a person's answer",
                clarification_id=answered.clarification_id,
            )
        await self.session.append("user", answered)
        return None

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

    # -- a broken stream ----------------------------------------------------------------------

    async def after_interruption(self, interrupted: Interrupted) -> StepResult | None:
        """Record the break; end the run when it broke too often, else wait to ask again.

        Not bot/retry.py's policy: the breaks are counted over the whole run (not per call),
        the wait grows linearly, and the limits are checked again before the next ask."""
        self.interruptions += 1
        await self.record_interruption(interrupted)
        if interrupted.usage is not None:  # the API billed the input of the broken turn
            await self.record_cost(interrupted.usage)
        if self.interruptions > self.rt.stream_retries:
            return await self.finish(
                RunStatus.INTERRUPTED,
                reason=f"the stream broke {self.interruptions} times: {interrupted.reason}",
                failure=interrupted.kind,
            )
        await asyncio.sleep(self.rt.interruption_backoff_s * self.interruptions)
        return None

    async def record_interruption(self, interrupted: Interrupted) -> None:
        log.warning(
            "agent %s (%s): turn interrupted (%s)",
            self.definition.name,
            self.context.session_key,
            interrupted.reason,
        )
        await agent_runs.record_interruption(
            self.rt.db,
            run_id=self.scope.run_id,
            turn=self.turns + 1,
            reason=interrupted.reason,
            tool_use_started=interrupted.tool_use_started,
            partial=interrupted.partial,
            now=self.rt.clock.now(),
        )
        event = AgentTurnInterrupted(
            run_id=self.scope.run_id,
            agent=self.definition.name,
            reason=interrupted.reason,
            tool_use_started=interrupted.tool_use_started,
        )
        await self.rt.bus.publish(self.context.stream, event)

    async def record_cost(self, usage: Any) -> None:
        call = await self.rt.costs.record_call(
            run_id=self.scope.run_id,
            session_id=self.session.id,
            pipeline_id=self.context.pipeline_id,
            pr=self.context.pr,
            model=self.definition.model,
            usage=Usage.from_api(usage),
        )
        self.run_cost += call.cost_usd

    # -- the end ----------------------------------------------------------------------------

    async def reported_output(self) -> Any:
        output = None
        for call in await tool_calls.for_session(self.rt.db, self.session.id):
            if call.tool == agent_tools.REPORT_TOOL and call.status is ToolCallStatus.COMPLETED:
                if not call.is_error:
                    output = call.arguments
        return output

    async def finish(
        self,
        status: RunStatus,
        *,
        reason: str | None = None,
        error: str | None = None,
        clarification_id: int | None = None,
        failure: FailureKind | None = None,
    ) -> StepResult:
        rt = self.rt
        # A block still open now was cut (a cancel mid-stream): never shown as completed.
        await self.coalescer.end_block(BlockState.INTERRUPTED)
        final_text = text_of(self.session.last_message) if status is RunStatus.COMPLETED else ""
        output = await self.reported_output()
        step_cost = (await rt.costs.step_total(self.session.id)).cost_usd
        await self.session.finish(status, final_text=final_text or None, output=output)
        await agent_runs.finish(
            rt.db,
            self.scope.run_id,
            status=status,
            reason=reason,
            error=error,
            turns=self.turns,
            cost_usd=self.run_cost,
            now=rt.clock.now(),
        )
        result = StepResult(
            status=status,
            final_text=final_text,
            output=output,
            cost_usd=self.run_cost,
            step_cost_usd=step_cost,
            run_id=self.scope.run_id,
            session_id=self.session.id,
            turns=self.turns,
            reason=reason,
            error=error,
            clarification_id=clarification_id,
            failure=failure,
        )
        await self.announce(result)
        return result

    async def announce(self, result: StepResult) -> None:
        """Publish agent_step_finished and log the end of the run."""
        finished = AgentStepFinished(
            run_id=result.run_id,
            agent=self.definition.name,
            session_key=self.context.session_key,
            status=result.status,
            cost_usd=round(result.cost_usd, 6),
            step_cost_usd=round(result.step_cost_usd, 6),
            reason=result.reason,
            error=result.error,
        )
        await self.rt.bus.publish(self.context.stream, finished)
        why = result.reason or result.error
        log.info(
            "agent %s (%s) %s after %d turn(s), $%.4f%s",
            self.definition.name,
            self.context.session_key,
            result.status,
            result.turns,
            result.cost_usd,
            f": {why}" if why else "",
        )
