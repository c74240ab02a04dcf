"""Worktree isolation: a git worktree per agent job over a cached mirror (docs/worktrees.md)."""
