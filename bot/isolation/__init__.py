"""Running untrusted commands: the sandbox (sandbox.py, bubblewrap) and the git jail around a
command run in a git worktree (git_jail.py and its parts). Shared infrastructure: worktree
setup, the agents' bash and the review engine's test runs all use it; it knows no feature."""
