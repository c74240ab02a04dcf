"""Package caches per repository, under real bubblewrap: a repository's setup fills its own
cache, the worktrees of that repository share it, the agents' bash and test commands only read
it, and another repository's setup never sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.agents.sandbox import BashPolicy, run_bash
from bot.isolation import sandbox
from storage.repositories import Repository
from tests.worktree_helpers import World, make_remote, open_world

pytestmark = pytest.mark.skipif(
    sandbox.bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)"
)

# Setup leaves a probe in the pip cache and records what it saw of the caches.
WARMING_SETUP = (
    "setup: >-\n"
    '  ls "$PIP_CACHE_DIR" > seen.txt &&\n'
    '  ls "$PIP_CACHE_DIR/../.." > caches.txt &&\n'
    '  echo warm > "$PIP_CACHE_DIR/probe"\n'
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path, isolation="bwrap"):
        yield opened


async def warm_repository(world: World, name: str) -> Repository:
    files = {".github/biagent.yml": WARMING_SETUP, ".gitignore": "seen.txt\ncaches.txt\n"}
    remote = make_remote(world.base, name, files)
    return await world.register(name, remote)


def probe(world: World, repository: Repository) -> Path:
    return world.manager.cache_path(repository.id) / "pip" / "probe"


async def test_setup_fills_its_repositorys_cache_and_its_worktrees_share_it(
    world: World,
) -> None:
    repository = await warm_repository(world, "octo/a")
    first = await world.manager.create_session("PROJ-1", [repository])
    assert first.status == "ready"
    assert probe(world, repository).read_text() == "warm\n"
    assert (Path(first.repos[0].path) / "seen.txt").read_text() == ""
    second = await world.manager.create_session("PROJ-2", [repository])
    assert second.status == "ready"
    # The second worktree's setup found what the first one's installed: no second download.
    assert (Path(second.repos[0].path) / "seen.txt").read_text() == "probe\n"
    environment = world.manager.environment(second.repos[0])
    assert environment["PIP_CACHE_DIR"] == str(probe(world, repository).parent)
    assert environment["UV_CACHE_DIR"] == str(world.manager.cache_path(repository.id) / "uv")


async def test_another_repositorys_setup_does_not_see_the_cache(world: World) -> None:
    first = await warm_repository(world, "octo/a")
    second = await warm_repository(world, "octo/b")
    assert (await world.manager.create_session("PROJ-1", [first])).status == "ready"
    view = await world.manager.create_session("PROJ-2", [second])
    assert view.status == "ready"
    worktree = Path(view.repos[0].path)
    # Its own cache started empty, and of all the caches only its own was there to list.
    assert (worktree / "seen.txt").read_text() == ""
    assert (worktree / "caches.txt").read_text().split() == [str(second.id)]
    assert world.manager.cache_path(first.id) != world.manager.cache_path(second.id)
    assert probe(world, first).read_text() == "warm\n"
    assert probe(world, second).read_text() == "warm\n"


async def test_agents_bash_reads_the_cache_but_cannot_write_it(world: World) -> None:
    repository = await warm_repository(world, "octo/a")
    view = await world.manager.create_session("PROJ-1", [repository])
    row = view.repos[0]
    scope = await world.manager.command_sandbox(row)
    assert world.manager.cache_path(repository.id) not in scope.writable_paths
    result = await run_bash(
        Path(row.path),
        'cat "$PIP_CACHE_DIR/probe"; echo poisoned > "$PIP_CACHE_DIR/probe";'
        ' echo new > "$UV_CACHE_DIR/wheel"; mkdir "$PIP_CACHE_DIR/../../1234"',
        BashPolicy(),
        scope=scope,
    )
    assert result.isolated
    assert result.output.startswith("warm\n")
    assert result.output.count("Read-only file system") >= 2, result.output
    assert probe(world, repository).read_text() == "warm\n"
    assert not (world.manager.cache_path(repository.id) / "uv" / "wheel").exists()
    assert not (world.manager.cache_dir / "1234").exists()


async def test_test_commands_read_the_cache_but_cannot_write_it(world: World) -> None:
    repository = await warm_repository(world, "octo/a")
    view = await world.manager.create_session("PROJ-1", [repository])
    row = view.repos[0]
    scope = await world.manager.command_sandbox(row)
    result = await sandbox.run_command(
        'cat "$PIP_CACHE_DIR/probe" && echo poisoned > "$PIP_CACHE_DIR/probe"',
        Path(row.path),
        env=scope.env,
        network=False,
        writable_paths=scope.writable_paths,
        hidden_paths=scope.hidden_paths,
        readonly_paths=scope.readonly_paths,
        isolation="bwrap",
    )
    assert not result.ok
    assert "warm" in result.output and "Read-only file system" in result.output
    assert probe(world, repository).read_text() == "warm\n"
    # The bare paths (the review engine's test runs) never make the cache writable.
    writable, _ = await world.manager.sandbox_paths(row)
    assert world.manager.cache_path(repository.id) not in writable


async def test_forgetting_a_repository_removes_its_cache(world: World) -> None:
    repository = await warm_repository(world, "octo/a")
    view = await world.manager.create_session("PROJ-1", [repository])
    assert view.status == "ready"
    await world.manager.forget_repository(repository, force=True)
    assert not world.manager.cache_path(repository.id).exists()
