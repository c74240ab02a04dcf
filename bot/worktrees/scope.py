"""What a command run in a worktree gets from bot/isolation/sandbox.py: its ports, its repository's
package caches, and the paths it may write or must not see. Setup uses it, and so do an agent's
bash (`AgentContext.sandbox`) and test commands.

Package caches: one directory per repository (`cache/<repository id>/`), shared by the
worktrees of that repository only, so an agent prompt-injected through one repository cannot
poison what another repository's setup installs from. Only setup writes it (`install=True`);
the agents' bash and test commands see it read-only (offline tools can still read it), and
every other repository's cache is hidden with the rest of WORKTREE_ROOT.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from bot.gitops.runner import run_git
from bot.isolation import sandbox
from bot.worktrees.layout import WorktreeLayout
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


# Where the service's own code (and usually its .env and database) lives: a source checkout.
SERVICE_DIR = Path(__file__).resolve().parents[2]
# Toolchains people install in a home directory; shown read-only although the home is hidden.
HOME_TOOLCHAINS = (".rustup", ".cargo/bin", ".local/share/uv", ".nvm", ".pyenv", "go/bin")


def _hideable(path: Path) -> bool:
    """Never hide `/` or what holds the system directories (the command would see nothing)."""
    return path != Path("/") and not any(
        system.is_relative_to(path) for system in sandbox.SYSTEM_PATHS
    )


def operator_paths() -> list[Path]:
    """The service's own directory (a source checkout) and the operator's home directories."""
    found = [Path.home(), Path("/home"), Path("/root")]
    if (SERVICE_DIR / "pyproject.toml").is_file():
        found.append(SERVICE_DIR)
    return [path for path in found if _hideable(path)]


def toolchain_paths(hidden: list[Path], own: list[Path]) -> list[Path]:
    """The `PATH` entries and home toolchains that fall inside a hidden directory, except the
    service's own directory and WORKTREE_ROOT (`own`): shown again, read-only."""
    candidates = [Path(entry) for entry in os.environ.get("PATH", "").split(":") if entry]
    candidates += [Path.home() / name for name in HOME_TOOLCHAINS]
    shown = []
    for candidate in candidates:
        if not candidate.is_absolute() or not candidate.is_dir():
            continue
        resolved = candidate.resolve()
        if any(resolved.is_relative_to(root) for root in own):
            continue
        if any(resolved.is_relative_to(root) for root in hidden):
            shown.append(resolved)
    return list(dict.fromkeys(shown))


class CommandScopes:
    """The sandbox scope of a worktree: its ports, its repository's caches, what it may see."""

    def __init__(
        self, layout: WorktreeLayout, *, port_block: int, hidden_paths: tuple[Path, ...]
    ) -> None:
        self._layout = layout
        self._port_block = port_block
        self._hidden_paths = hidden_paths

    def environment(self, row: WorktreeRepo) -> dict[str, str]:
        """Variables for any command run in the worktree: its ports and its repository's
        caches."""
        cache = self._layout.cache_path(row.repository_id)
        environment: dict[str, str] = {}
        for name, variables in CACHE_VARIABLES.items():
            for variable in variables:
                environment[variable] = str(cache / name)
        if row.port_base is not None:
            last = row.port_base + self._port_block - 1
            environment.update(
                {
                    "PORT": str(row.port_base),
                    "BIAGENT_PORT_BASE": str(row.port_base),
                    "BIAGENT_PORT_COUNT": str(self._port_block),
                    "BIAGENT_PORTS": f"{row.port_base}-{last}",
                }
            )
        return environment

    async def sandbox_paths(
        self, row: WorktreeRepo, *, install: bool = False
    ) -> tuple[list[Path], list[Path]]:
        """(writable, hidden) paths for bot/isolation/sandbox.py when running in this worktree.

        Writable: the worktree, its private git dir in the mirror (index, HEAD) and, only with
        `install` (setup), its repository's caches; the mirror itself is shown read-only by
        bot/isolation/sandbox.py. Hidden: the whole of WORKTREE_ROOT besides those (other mirrors,
        sessions, spares, the file store, other repositories' caches), the service's own
        directory, the operator's home, what the service was told to hide (database files, the
        GitHub private key) and the directories those are in. Without `install` the caches are
        hidden too unless shown read-only (`readonly_paths`, as `command_sandbox` does).
        """
        worktree = Path(row.path)
        git_dir = await run_git(
            "rev-parse", "--absolute-git-dir", cwd=worktree, optional_locks=False
        )
        writable = [Path(git_dir.stdout.strip())]
        if install:
            writable.append(self._layout.cache_path(row.repository_id))
        told = [path.resolve() for path in self._hidden_paths]
        folders = [path.parent for path in told if _hideable(path.parent)]
        hidden = [self._layout.root, *operator_paths(), *told, *folders]
        return writable, list(dict.fromkeys(hidden))

    def toolchain_paths(self, hidden: list[Path]) -> list[Path]:
        """Toolchains on `PATH` (or in the operator's home) that `hidden` would hide: shown
        read-only to setup, tests and the agents' bash."""
        return toolchain_paths(hidden, [self._layout.root, SERVICE_DIR])

    async def command_sandbox(
        self, row: WorktreeRepo, *, install: bool = False
    ) -> sandbox.SandboxScope:
        """What a command run in this worktree gets from bot/isolation/sandbox.py: the environment
        (ports, caches) and the writable, hidden and read-only paths. The repository's caches
        are writable only with `install` (setup, which fills them); for the agents' bash
        (`AgentContext.sandbox`) and test commands they are read-only. The writable paths and
        the caches exist when this returns."""
        writable, hidden = await self.sandbox_paths(row, install=install)
        cache = self._layout.cache_path(row.repository_id)
        await asyncio.to_thread(
            _make_dirs, [*writable, *(cache / name for name in CACHE_VARIABLES)]
        )
        readonly = self.toolchain_paths(hidden)
        if not install:
            readonly.append(cache)
        return sandbox.SandboxScope(
            env=self.environment(row),
            writable_paths=tuple(writable),
            hidden_paths=tuple(hidden),
            readonly_paths=tuple(readonly),
        )


def _make_dirs(paths: list[Path]) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
