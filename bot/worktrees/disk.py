"""What a worktree costs on disk: allocated bytes, each inode counted once."""

from __future__ import annotations

import os
from pathlib import Path


def allocated_bytes(root: Path) -> int:
    """Blocks allocated under `root` (hard links counted once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        for name in (*subdirectories, *files):
            try:
                status = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            key = (status.st_dev, status.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += status.st_blocks * 512
    return total


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
