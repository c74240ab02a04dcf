"""The domain: GitHub App logic, reviews, JIRA, pipelines, agents, worktrees, the event bus.

bot/ knows storage/, never web/ (docs/design.md, Layers); only `bot.__main__` wires in web/.
"""
