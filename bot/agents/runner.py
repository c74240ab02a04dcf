"""AgentRunner: the public entry point of the agent runtime (docs/agents.md).

    result = await runner.run_step("review_response", AgentContext(...))

runs (or continues) the step named by the context's session key and returns a StepResult:
final text, reported output, cost, and status (completed, paused_for_clarification,
budget_stopped, failed, interrupted). Calling run_step again with the same session key
continues the stored conversation: after a clarification is answered, after a budget stop
with a larger budget, after a crash.

The runner owns the shared parts: the Anthropic client, the tool registry (the registration
point for the GitHub and JIRA adapters), the cost tracker, the MCP bridge, the token sequence.
It runs at most one run at a time per session key.
"""

from __future__ import annotations

import asyncio
import logging
import os

import anthropic

from bot.agents.clarifications import answer_clarification
from bot.agents.client import build_client
from bot.agents.costs import CostTracker
from bot.agents.definitions import AgentsConfig, load_agents_config
from bot.agents.loop import AgentRuntime, BaseAgent
from bot.agents.mcp_bridge import McpBridge
from bot.agents.sandbox import BashPolicy
from bot.agents.step import AgentContext, StepResult
from bot.agents.tokens import TokenSequence
from bot.agents.tool_registry import ToolRegistry
from bot.agents.tools import builtin_registry
from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS, Settings
from bot.events.bus import EventBus
from bot.isolation import sandbox
from storage import agent_runs
from storage.clarifications import Clarification
from storage.database import Database

log = logging.getLogger(__name__)


def _is_directory(path: os.PathLike[str] | str) -> bool:
    return os.path.isdir(path)


class AgentRunner:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: anthropic.AsyncAnthropic,
        config: AgentsConfig,
        tools: ToolRegistry | None = None,
        bash_policy: BashPolicy | None = None,
        token_interval_s: float = 0.1,
        token_ttl_s: float = DEFAULT_SETTINGS.token_buffer_ttl,
        stream_retries: int = 2,
        interruption_backoff_s: float = 1.0,
        agent_classes: dict[str, type[BaseAgent]] | None = None,
    ) -> None:
        self.config = config
        self.tools = tools or builtin_registry()
        self.costs = CostTracker(db, config.prices, clock)
        self.runtime = AgentRuntime(
            db=db,
            bus=bus,
            clock=clock,
            client=client,
            tools=self.tools,
            costs=self.costs,
            token_sequence=TokenSequence(db),
            bash_policy=bash_policy or BashPolicy(),
            token_interval_s=token_interval_s,
            token_ttl_s=token_ttl_s,
            stream_retries=stream_retries,
            interruption_backoff_s=interruption_backoff_s,
        )
        self.agent_classes = agent_classes or {}
        self.mcp = McpBridge(config.mcp_servers)
        self._session_locks: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        """Mark runs a stopped process left behind, connect the MCP servers."""
        abandoned = await agent_runs.mark_abandoned(self.runtime.db, now=self.runtime.clock.now())
        if abandoned:
            log.warning("%d agent run(s) were cut off by a stop; run_step resumes them", abandoned)
        log.info(
            "agents: %d defined (%s); bash: %s",
            len(self.config.agents),
            " + ".join(self.config.sources),
            "bubblewrap, no network"
            if sandbox.bwrap_path() and self.runtime.bash_policy.use_bwrap
            else "NO SANDBOX (bwrap not found): commands run without network isolation",
        )
        if self.config.mcp_servers:
            await self.mcp.start(self.tools)

    async def close(self) -> None:
        await self.mcp.close()
        await self.runtime.client.close()

    def agent(self, name: str) -> BaseAgent:
        definition = self.config.agent(name)
        agent_class = self.agent_classes.get(name, BaseAgent)
        return agent_class(definition, self.runtime)

    async def run_step(self, agent_name: str, context: AgentContext) -> StepResult:
        """Run or continue the step `context.session_key` with the agent `agent_name`."""
        agent = self.agent(agent_name)
        if not _is_directory(context.worktree):
            raise ValueError(f"worktree {context.worktree} is not a directory")
        lock = self._session_locks.setdefault(context.session_key, asyncio.Lock())
        async with lock:
            return await agent.run(context)

    async def answer_clarification(
        self, clarification_id: int, answer: str, *, answered_by: str | None = None
    ) -> Clarification:
        """Record a person's answer and publish clarification_answered; the step's owner then
        calls run_step with the same session key to continue."""
        rt = self.runtime
        return await answer_clarification(
            rt.db, rt.bus, rt.clock, clarification_id, answer, answered_by=answered_by
        )


def build_agent_runner(
    settings: Settings, *, db: Database, bus: EventBus, clock: Clock
) -> AgentRunner:
    """The runner as the app factory builds it from the settings (the agents file, retries,
    bash timeout, token expiry). Raises AgentConfigError for a bad agents file."""
    config = load_agents_config(settings.agents_file, default_model=settings.model)
    client = build_client(
        base_url=settings.anthropic_base_url, max_retries=settings.agent_max_retries
    )
    return AgentRunner(
        db=db,
        bus=bus,
        clock=clock,
        client=client,
        config=config,
        bash_policy=BashPolicy(timeout_s=settings.agent_bash_timeout),
        token_ttl_s=settings.token_buffer_ttl,
    )
