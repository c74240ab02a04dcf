"""The worktree manager's limits and choices. The ones an operator sets come from `Settings`
(bot/config.py), whose defaults are the only ones: `WorktreeOptions()` takes them from there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.config import DEFAULT_SETTINGS, Settings
from bot.isolation.sandbox import DEFAULT_OUTPUT_CAP_BYTES, Isolation

GIB = 1024**3
# What nothing configures: a worktree's block of ports and how long setup waits for an answer.
PORT_BLOCK = 10
INPUT_TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class WorktreeOptions:
    """Settings-backed values (defaults from `Settings`) and the fixed ones beside them."""

    root: Path = DEFAULT_SETTINGS.worktree_root
    setup_timeout_s: float = DEFAULT_SETTINGS.worktree_setup_timeout
    quota_bytes: int = int(DEFAULT_SETTINGS.worktree_quota_gb * GIB)
    idle_ttl_s: float = DEFAULT_SETTINGS.worktree_idle_ttl
    port_first: int = DEFAULT_SETTINGS.worktree_port_base
    spares_per_repository: int = DEFAULT_SETTINGS.worktree_spares
    port_block: int = PORT_BLOCK
    input_timeout_s: float = INPUT_TIMEOUT_S
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES
    hidden_paths: tuple[Path, ...] = field(default=())  # never readable by a command
    isolation: Isolation = "auto"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, hidden_paths: tuple[Path, ...] = ()
    ) -> WorktreeOptions:
        return cls(
            root=settings.worktree_root,
            setup_timeout_s=settings.worktree_setup_timeout,
            quota_bytes=int(settings.worktree_quota_gb * GIB),
            idle_ttl_s=settings.worktree_idle_ttl,
            port_first=settings.worktree_port_base,
            spares_per_repository=settings.worktree_spares,
            hidden_paths=hidden_paths,
        )
