"""What a command run in a worktree gets from bot/sandbox.py: its ports, the shared package
caches, and the paths it may write or must not see. Setup uses it, and so does an agent's bash
(`AgentContext.sandbox`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot import sandbox
from bot.worktrees.core import ManagerCore
from bot.worktrees.git import run_git
from storage.worktrees import WorktreeRepo

log = logging.getLogger(__name__)

CACHE_VARIABLES = {
    "uv": ("UV_CACHE_DIR",),
    "pip": ("PIP_CACHE_DIR",),
    "npm": ("npm_config_cache",),
    "pnpm": ("npm_config_store_dir", "PNPM_STORE_DIR"),
    "yarn": ("YARN_CACHE_FOLDER",),
    "go": ("GOMODCACHE",),
    "cargo": ("CARGO_HOME",),
}


class CommandScope(ManagerCore):
    """The sandbox scope of a worktree."""

    def environment(self, row: WorktreeRepo) -> dict[str, str]:
        """Variables for any command run in the worktree: its ports and the shared caches."""
        environment: dict[str, str] = {}
        for name, variables in CACHE_VARIABLES.items():
            for variable in variables:
                environment[variable] = str(self.cache_dir / name)
        if row.port_base is not None:
            last = row.port_base + self.port_block - 1
            environment.update(
                {
                    "PORT": str(row.port_base),
                    "BIAGENT_PORT_BASE": str(row.port_base),
                    "BIAGENT_PORT_COUNT": str(self.port_block),
                    "BIAGENT_PORTS": f"{row.port_base}-{last}",
                }
            )
        return environment

    async def sandbox_paths(self, row: WorktreeRepo) -> tuple[list[Path], list[Path]]:
        """(writable, hidden) paths for bot/sandbox.py when running in this worktree.

        Writable: the worktree, its private git dir in the mirror (index, HEAD) and the shared
        caches. Hidden: other worktrees, the per-repository file store, and what the service
        was told to hide (database files, the GitHub private key).
        """
        worktree = Path(row.path)
        git_dir = await run_git(
            "rev-parse", "--absolute-git-dir", cwd=worktree, optional_locks=False
        )
        writable = [Path(git_dir.stdout.strip()), self.cache_dir]
        hidden = [self.sessions_dir, self.store_dir, *self.hidden_paths]
        return writable, hidden

    async def command_sandbox(self, row: WorktreeRepo) -> sandbox.SandboxScope:
        """What any command run in this worktree gets from bot/sandbox.py: the environment
        (ports, caches) and the writable and hidden paths. Setup uses it; so does the agents'
        bash, through `AgentContext.sandbox`. The writable paths exist when this returns."""
        writable, hidden = await self.sandbox_paths(row)
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
        return sandbox.SandboxScope(
            env=self.environment(row), writable_paths=tuple(writable), hidden_paths=tuple(hidden)
        )
