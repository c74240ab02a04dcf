"""Git as biagent runs it: the one runner (runner.py, the token per command, the repository's
code switched off) and what is parsed from its output (worktree_list.py). Shared
infrastructure under worktrees, the git jail and the review engine."""
