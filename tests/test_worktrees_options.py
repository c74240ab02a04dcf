"""WorktreeOptions and WorktreeLayout: the settings a manager runs with, where things live."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings, load_settings
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.options import GIB, WorktreeOptions
from storage.repositories import Repository


def test_default_options_are_the_settings_defaults() -> None:
    assert WorktreeOptions() == WorktreeOptions.from_settings(Settings())


def test_options_follow_what_the_operator_set() -> None:
    settings = load_settings(
        {
            "WORKTREE_ROOT": "/srv/wt",
            "WORKTREE_QUOTA_GB": "3",
            "WORKTREE_IDLE_TTL": "2h",
            "WORKTREE_SETUP_TIMEOUT": "90",
            "WORKTREE_PORT_BASE": "30000",
            "WORKTREE_SPARES": "2",
        }
    )
    hidden = (Path("/srv/biagent.db"),)
    options = WorktreeOptions.from_settings(settings, hidden_paths=hidden)
    assert options.root == Path("/srv/wt")
    assert options.quota_bytes == 3 * GIB
    assert options.idle_ttl_s == 7200.0
    assert options.setup_timeout_s == 90.0
    assert (options.port_first, options.spares_per_repository) == (30000, 2)
    assert options.hidden_paths == hidden


def test_the_layout_keeps_each_repository_apart(tmp_path: Path) -> None:
    layout = WorktreeLayout.under(tmp_path / "wt" / ".." / "wt")
    repository = Repository(
        id=7, full_name="octo/app", clone_url="file:///x", default_branch=None,
        installation_id=None, setup_command=None, test_command=None, answered_by=None,
        answered_at=None, quota_bytes=None, idle_ttl_seconds=None, created_at="",
        updated_at="",
    )  # fmt: skip
    assert layout.root == (tmp_path / "wt").resolve()
    assert layout.mirror_path(repository) == layout.root / "mirrors" / "octo__app.git"
    session_dir = layout.root / "sessions" / "s1"
    assert layout.worktree_path("s1", repository) == session_dir / "octo__app"
    assert layout.cache_path(7) == layout.root / "cache" / "7"
    assert layout.store_path(repository) == layout.root / "store" / "octo__app"
