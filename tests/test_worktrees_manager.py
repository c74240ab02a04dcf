"""WorktreeManager with real git: mirrors, sessions, setup and what setup may see. Cleanup,
pushes, the token and spare worktrees are in test_worktrees_cleanup_and_push.py."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from bot.isolation import sandbox
from bot.worktrees.manager import WorktreeSetupError
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from tests.worktree_helpers import (  # noqa: F401  (pytest fixtures, by name)
    Remote,
    World,
    git,
    make_remote,
    open_world,
    remote_fixture,
    world_fixture,
)


async def test_create_setup_and_cleanup(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-7", [repository])
    assert view.status == "ready"
    worktree = Path(view.repos[0].path)
    assert (worktree / "src/app.py").read_text() == "print(1)\n"
    assert (worktree / "built.txt").read_text() == "built\n"
    assert git("branch", "--show-current", cwd=worktree) == "biagent/PROJ-7"
    mirror = world.manager.mirror_path(repository)
    listed = git("worktree", "list", "--porcelain", cwd=mirror)
    assert f"worktree {worktree}" in listed and "locked biagent session" in listed
    assert view.repos[0].size_bytes and view.repos[0].setup_exit_code == 0
    types = [event["type"] for event in await world.events()]
    assert types[:3] == [
        "worktree_session_creating",
        "worktree_repo_created",
        "worktree_setup_started",
    ]
    assert types[-1] == "worktree_session_ready"
    output = [
        e["detail"] for e in await world.events("worktree_status") if e["status"] == "setup_output"
    ]
    assert f"PORT={view.repos[0].port_base}" in "\n".join(output)

    assert await world.manager.cleanup_session(view.id, "done")
    assert not worktree.exists()
    assert "biagent/PROJ-7" not in git("branch", "--list", cwd=mirror)
    assert git("worktree", "list", "--porcelain", cwd=mirror).count("worktree ") == 1
    cleaned = await world.events("worktree_session_cleaned")
    assert cleaned[0]["reason"] == "done" and cleaned[0]["session_id"] == view.id
    again = await world.manager.get(view.id)
    assert again is not None and again.status == "cleaned" and again.repos[0].port_base is None


async def test_two_sessions_on_one_repository_at_once(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    first, second = await asyncio.gather(
        world.manager.create_session("PROJ-1", [repository]),
        world.manager.create_session("PROJ-2", [repository]),
    )
    assert first.status == second.status == "ready"
    assert first.repos[0].path != second.repos[0].path
    assert first.repos[0].port_base != second.repos[0].port_base
    (Path(first.repos[0].path) / "src/app.py").write_text("changed\n")
    assert (Path(second.repos[0].path) / "src/app.py").read_text() == "print(1)\n"


async def test_one_session_spans_several_repositories(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    other = make_remote(tmp_path, "octo/web", {"Makefile": "setup:\n\ttrue\ntest:\n\ttrue\n"})
    repositories = [
        await world.register("octo/app", remote),
        await world.register("octo/web", other),
    ]
    view = await world.manager.create_session("PROJ-3", repositories)
    assert view.status == "ready"
    assert sorted(Path(r.path).name for r in view.repos) == ["octo__app", "octo__web"]


async def test_the_mirror_is_fetched_incrementally(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    await world.manager.create_session("PROJ-1", [repository])
    newer = remote.commit({"src/new.py": "x = 2\n"}, "newer")
    view = await world.manager.create_session("PROJ-2", [repository])
    assert git("rev-parse", "HEAD", cwd=Path(view.repos[0].path)) == newer
    assert view.repos[0].base_sha == newer


async def test_setup_that_modifies_tracked_files_fails_loudly(world: World, tmp_path: Path) -> None:
    remote = make_remote(
        tmp_path,
        "octo/bad",
        {".github/biagent.yml": "setup: echo oops >> README\n", "README": "hi\n"},
    )
    repository = await world.register("octo/bad", remote)
    with pytest.raises(WorktreeSetupError, match=r"changed tracked files.*README"):
        await world.manager.create_session("PROJ-9", [repository])
    [session] = await world.manager.list_sessions()
    assert session.status == "failed" and session.repos[0].status == "setup_failed"
    failed = [e for e in await world.events("worktree_status") if e["status"] == "setup_failed"]
    assert "README" in failed[0]["detail"]


async def test_failing_setup_records_its_output(world: World, tmp_path: Path) -> None:
    remote = make_remote(
        tmp_path, "octo/fail", {".github/biagent.yml": "setup: echo broken; exit 3\n"}
    )
    repository = await world.register("octo/fail", remote)
    with pytest.raises(WorktreeSetupError, match="exited 3"):
        await world.manager.create_session("PROJ-9", [repository])
    [session] = await world.manager.list_sessions()
    assert session.repos[0].setup_exit_code == 3
    assert "broken" in (session.repos[0].setup_output or "")


async def test_listed_ignored_files_come_from_the_store(world: World, tmp_path: Path) -> None:
    remote = make_remote(
        tmp_path,
        "octo/env",
        {".github/biagent.yml": "setup: grep -q SECRET=1 .env\ncopy_files: [.env]\n"},
    )
    repository = await world.register("octo/env", remote)
    store = world.manager.store_path(repository)
    store.mkdir(parents=True)
    (store / ".env").write_text("SECRET=1\n")
    view = await world.manager.create_session("PROJ-4", [repository])
    assert view.status == "ready"
    assert (Path(view.repos[0].path) / ".env").read_text() == "SECRET=1\n"


async def test_setup_gets_its_repositorys_caches_and_its_ports(
    world: World, tmp_path: Path
) -> None:
    remote = make_remote(
        tmp_path,
        "octo/envs",
        {".github/biagent.yml": "setup: env > built.txt\n"},
    )
    repository = await world.register("octo/envs", remote)
    view = await world.manager.create_session("PROJ-5", [repository])
    seen = (Path(view.repos[0].path) / "built.txt").read_text()
    cache = world.manager.cache_path(repository.id)
    assert f"UV_CACHE_DIR={cache / 'uv'}" in seen
    assert f"npm_config_cache={cache / 'npm'}" in seen
    assert f"PIP_CACHE_DIR={cache / 'pip'}" in seen
    base = view.repos[0].port_base
    assert f"BIAGENT_PORTS={base}-{base + 9}" in seen


async def test_unsure_setup_asks_a_person_and_remembers(world: World, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, "octo/odd", {"notes.txt": "no manifest here\n"})
    repository = await world.register("octo/odd", remote)
    subscription = world.bus.subscribe()
    creating = asyncio.create_task(world.manager.create_session("PROJ-6", [repository]))
    while "user_input_request" not in [frame.type for frame in await subscription.next_batch()]:
        pass
    [asked] = await world.events("pipeline_needs_input")
    assert "octo/odd" in asked["question"]
    [pending] = await worktree_store.pending_input_requests(world.db, repository.id)
    assert pending.id == asked["request_id"]
    await world.manager.answer_setup(
        repository.id, setup_command="echo built > built.txt", answered_by="alice"
    )
    view = await creating
    assert view.status == "ready"
    assert (Path(view.repos[0].path) / "built.txt").exists()
    stored = await repository_store.get(world.db, repository.id)
    assert stored is not None and stored.setup_command == "echo built > built.txt"
    await world.manager.create_session("PROJ-8", [repository])
    assert len(await world.events("pipeline_needs_input")) == 1


async def test_unanswered_question_leaves_the_session_waiting(world: World, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, "octo/odd", {"notes.txt": "no manifest here\n"})
    repository = await world.register("octo/odd", remote)
    view = await world.manager.create_session("PROJ-6", [repository], wait_for_input=False)
    assert view.status == "needs_input"
    await world.manager.answer_setup(repository.id, setup_command="", answered_by="bob")
    ready = await world.manager.run_setup(view.id)
    assert ready.status == "ready"


PROBE_YML = """setup: |
  for path in "$OTHER_MIRROR/HEAD" "$DATABASE" "$DATABASE_DIR/notes.txt" "$SERVICE/pyproject.toml"
  do
    if cat "$path" >/dev/null 2>&1; then echo "READ $path"; else echo "hidden $path"; fi
  done
  git log -1 --format=%s && echo built > built.txt
"""


@pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap not installed")
async def test_setup_sees_neither_other_mirrors_nor_the_database_nor_the_service() -> None:
    """Outside /tmp (which the jail replaces anyway), as WORKTREE_ROOT is in production."""
    from bot.worktrees.scope import SERVICE_DIR

    base = Path(tempfile.mkdtemp(prefix="biagent-scope-", dir="/var/tmp"))
    try:
        database_dir = base / "data"
        database_dir.mkdir()
        (database_dir / "notes.txt").write_text("private\n")
        async for world in open_world(base, hidden_paths=[base / "biagent.db"]):
            other = make_remote(base, "octo/other", {"lib.py": "x\n"})
            other_repository = await world.register("octo/other", other)
            other_mirror = await world.manager.ensure_mirror(other_repository)
            assert (other_mirror / "HEAD").is_file()
            yml = PROBE_YML.replace("$OTHER_MIRROR", str(other_mirror))
            yml = yml.replace("$DATABASE_DIR", str(database_dir))
            yml = yml.replace("$DATABASE", str(base / "biagent.db")).replace(
                "$SERVICE", str(SERVICE_DIR)
            )
            remote = make_remote(base, "octo/app", {".github/biagent.yml": yml})
            repository = await world.register("octo/app", remote)
            view = await world.manager.create_session("PROJ-3", [repository])
            output = view.repos[0].setup_output or ""
            assert view.status == "ready", output
            assert "READ" not in output and output.count("hidden ") == 4, output
            assert "initial" in output  # its own repository's git still works
    finally:
        shutil.rmtree(base, ignore_errors=True)
