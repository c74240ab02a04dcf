"""The agent runtime: Claude agents with tools, streaming, cost tracking and persistent sessions.

Entry point: `AgentRunner.run_step(agent_name, AgentContext(...)) -> StepResult`
(bot/agents/runner.py; docs/agents.md). One module per job: definitions (the agents file),
tools and sandbox (what an agent may do in its worktree), loop (BaseAgent, the tool-use loop),
costs (CostTracker), sessions (PipelineSession), mcp_bridge, tokens (coalesced token frames),
clarifications, client (the SDK on aiohttp).
"""

from bot.agents.costs import CostTracker
from bot.agents.definitions import AgentDefinition, AgentsConfig, load_agents_config
from bot.agents.loop import AgentContext, BaseAgent, StepResult
from bot.agents.runner import AgentRunner
from bot.agents.sessions import PipelineSession
from bot.agents.tools import Tool, ToolRegistry, ToolResult

__all__ = [
    "AgentContext",
    "AgentDefinition",
    "AgentRunner",
    "AgentsConfig",
    "BaseAgent",
    "CostTracker",
    "PipelineSession",
    "StepResult",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "load_agents_config",
]
