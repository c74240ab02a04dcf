"""Start-up reconciliation and orphan cleanup: the disk and the tables agree after a crash."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.worktrees.manager import WorktreeManager
from storage import worktrees as worktree_store
from storage.repositories import Repository
from tests.worktree_helpers import Remote, World, git, make_remote, open_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path):
        yield opened


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(tmp_path, "octo/app", {"Makefile": "setup:\n\ttrue\n"})


def restarted(world: World) -> WorktreeManager:
    """A new manager over the same database and root, as after a restart."""
    return WorktreeManager(
        db=world.db, bus=world.bus, clock=world.clock, options=world.manager.options
    )


def listed_paths(world: World, repository: Repository) -> str:
    return git("worktree", "list", "--porcelain", cwd=world.manager.mirror_path(repository))


async def test_half_created_locked_worktree_is_cleaned(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    mirror = await world.manager.ensure_mirror(repository)
    # The crash: rows written, `git worktree add --lock` done, the process died before the rest.
    session = await worktree_store.create_session(
        world.db, session_id="crashed1", owner="PROJ-1", branch="biagent/PROJ-1",
        stream="worktree:crashed1", now=world.clock.now(),
    )  # fmt: skip
    path = world.manager.sessions_dir / session.id / repository.slug
    await worktree_store.add_repo(
        world.db, session_id=session.id, repository_id=repository.id, path=str(path),
        branch=session.branch, port_block=10, first_port=20000, push_url=None, push_ref=None,
        pr_number=None, now=world.clock.now(),
    )  # fmt: skip
    git("worktree", "add", "-q", "--lock", "--reason", "x", "-b", session.branch, str(path),
        "refs/remotes/origin/main", cwd=mirror)  # fmt: skip

    report = await restarted(world).reconcile()

    assert report.cleaned == ("crashed1",)
    assert not path.exists()
    assert str(path) not in listed_paths(world, repository)
    assert "biagent/PROJ-1" not in git("branch", "--list", cwd=mirror)
    cleaned = await world.events("worktree_session_cleaned")
    assert cleaned[0]["reason"] == "interrupted while being created"


async def test_unlocked_worktree_with_a_stale_index_lock_is_repaired(
    world: World, remote: Remote
) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-2", [repository])
    worktree = Path(view.repos[0].path)
    mirror = world.manager.mirror_path(repository)
    git("worktree", "unlock", str(worktree), cwd=mirror)
    git_dir = Path(git("rev-parse", "--absolute-git-dir", cwd=worktree))
    (git_dir / "index.lock").write_text("")  # git died holding it

    report = await restarted(world).reconcile()

    assert report.repaired == (view.id,)
    assert not (git_dir / "index.lock").exists()
    assert "locked biagent session" in listed_paths(world, repository)
    git("status", "--porcelain", cwd=worktree)  # usable again
    assert (await world.manager.get(view.id)).status == "ready"  # type: ignore[union-attr]


async def test_cleanup_interrupted_midway_is_finished(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-3", [repository])
    await worktree_store.set_session_status(world.db, view.id, "cleaning", now=world.clock.now())

    report = await restarted(world).reconcile()

    assert report.cleaned == (view.id,)
    assert not Path(view.repos[0].path).exists()
    assert "biagent/PROJ-3" not in git(
        "branch", "--list", cwd=world.manager.mirror_path(repository)
    )


async def test_setup_interrupted_by_a_crash_is_marked_failed(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-4", [repository], run_setup=False)
    await worktree_store.set_session_status(world.db, view.id, "setting_up", now=world.clock.now())
    await worktree_store.update_repo(
        world.db, view.repos[0].id, now=world.clock.now(), status="setup_running"
    )

    await restarted(world).reconcile()

    again = await world.manager.get(view.id)
    assert again is not None and again.status == "failed"
    assert Path(view.repos[0].path).exists()
    assert (await world.manager.run_setup(view.id)).status == "ready"


async def test_worktree_deleted_behind_our_back_ends_its_session(
    world: World, remote: Remote
) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-5", [repository], run_setup=False)
    git("worktree", "remove", "--force", "--force", view.repos[0].path,
        cwd=world.manager.mirror_path(repository))  # fmt: skip

    report = await restarted(world).reconcile()

    assert report.cleaned == (view.id,)
    assert (await world.manager.get(view.id)).status == "cleaned"  # type: ignore[union-attr]


async def test_orphan_directory_is_removed(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    live = await world.manager.create_session("PROJ-6", [repository], run_setup=False)
    orphan = world.manager.sessions_dir / "0123456789ab" / "octo__app"
    orphan.mkdir(parents=True)
    (orphan / "left.txt").write_text("from a session nobody knows\n")
    stray = world.manager.sessions_dir / live.id / "octo__gone"
    stray.mkdir()

    removed = await world.manager.cleanup_orphans()

    assert sorted(removed) == sorted([str(stray), str(orphan.parent)])
    assert not orphan.parent.exists() and Path(live.repos[0].path).exists()


async def test_orphan_git_worktree_without_a_row_is_removed(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    mirror = await world.manager.ensure_mirror(repository)
    path = world.manager.sessions_dir / "feedfacecafe" / repository.slug
    git("worktree", "add", "-q", "--lock", "-b", "biagent/lost", str(path),
        "refs/remotes/origin/main", cwd=mirror)  # fmt: skip

    await restarted(world).reconcile()

    assert not path.exists()
    assert str(path) not in listed_paths(world, repository)


async def test_a_deleted_mirror_or_git_dir_ends_the_session_and_start_up_goes_on(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    repository = await world.register("octo/app", remote)
    kept = await world.manager.create_session("PROJ-1", [repository])
    other = make_remote(tmp_path, "octo/lib", {"Makefile": "setup:\n\ttrue\n"})
    lib = await world.register("octo/lib", other)
    gone = await world.manager.create_session("PROJ-2", [lib])
    orphaned_git_dir = await world.manager.create_session("PROJ-3", [repository])
    shutil.rmtree(world.manager.mirror_path(lib))
    private = git("rev-parse", "--absolute-git-dir", cwd=Path(orphaned_git_dir.repos[0].path))
    shutil.rmtree(private)
    report = await restarted(world).reconcile()
    assert set(report.cleaned) == {gone.id, orphaned_git_dir.id}
    for session_id in (gone.id, orphaned_git_dir.id):
        session = await worktree_store.get_session(world.db, session_id)
        assert session is not None and session.status == "cleaned"
    still = await worktree_store.get_session(world.db, kept.id)
    assert still is not None and still.status == "ready"
