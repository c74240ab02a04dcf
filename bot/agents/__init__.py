"""The agent runtime: Claude agents with tools, streaming, cost tracking and persistent sessions.

Entry point: `AgentRunner.run_step(agent_name, AgentContext(...)) -> StepResult`
(bot/agents/runner.py; docs/agents.md). One module per job: definitions (the agents file);
step (AgentContext, StepResult) and failures (FailureKind); loop (BaseAgent, the tool-use
loop), turns (one streamed turn), tool_use (answering a turn's tool calls), messages (content
blocks); tool_registry (Tool, ToolRegistry), tools (the built-in table), file_tools, grep_tool,
bash_tool, worktree_files and sandbox (what an agent may do in its worktree); costs
(CostTracker), sessions (PipelineSession), mcp_bridge, tokens (coalesced token frames),
clarifications, events (the message types), client (the SDK on aiohttp).
"""

from bot.agents.costs import CostTracker
from bot.agents.definitions import AgentDefinition, AgentsConfig, load_agents_config
from bot.agents.failures import FailureKind
from bot.agents.loop import BaseAgent
from bot.agents.runner import AgentRunner
from bot.agents.sessions import PipelineSession
from bot.agents.step import AgentContext, StepResult
from bot.agents.tool_registry import Tool, ToolRegistry, ToolResult

__all__ = [
    "AgentContext",
    "AgentDefinition",
    "AgentRunner",
    "AgentsConfig",
    "BaseAgent",
    "CostTracker",
    "FailureKind",
    "PipelineSession",
    "StepResult",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "load_agents_config",
]
