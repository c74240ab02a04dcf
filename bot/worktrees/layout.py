"""Where everything lives under WORKTREE_ROOT (the layout is drawn in bot/worktrees/manager.py).
Every collaborator that touches the disk takes the one `WorktreeLayout`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.repositories import Repository


@dataclass(frozen=True, slots=True)
class WorktreeLayout:
    """The directories under one root (resolved once)."""

    root: Path

    @classmethod
    def under(cls, root: Path) -> WorktreeLayout:
        return cls(root.resolve())

    @property
    def mirrors_dir(self) -> Path:
        return self.root / "mirrors"

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def spares_dir(self) -> Path:
        return self.root / "spares"

    def cache_path(self, repository_id: int) -> Path:
        """The package caches of one repository, keyed by its stored id (never reused): shared
        by that repository's worktrees, never by another repository's."""
        return self.cache_dir / str(repository_id)

    def mirror_path(self, repository: Repository) -> Path:
        return self.mirrors_dir / f"{repository.slug}.git"

    def has_mirror(self, repository: Repository) -> bool:
        return (self.mirror_path(repository) / "HEAD").is_file()

    def store_path(self, repository: Repository) -> Path:
        """Where the gitignored files listed in `copy_files` are kept for this repository."""
        return self.store_dir / repository.slug

    def worktree_path(self, session_id: str, repository: Repository) -> Path:
        return self.sessions_dir / session_id / repository.slug
