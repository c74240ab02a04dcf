"""The agents' bash in a worktree of the WorktreeManager (AgentContext.sandbox): the worktree's
ports and its repository's caches (read-only), its writable paths, and still no secret of the
service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.agents.loop import AgentContext
from bot.agents.runner import AgentRunner
from bot.isolation.sandbox import bwrap_path
from storage.worktrees import WorktreeRepo
from tests.agents.conftest import git
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.worktree_helpers import World, make_remote, open_world

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-secret",
    "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----",
    "BIAGENT_API_TOKEN": "api-token-secret-value",
    "JIRA_API_TOKEN": "jira-secret-value",
}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    base = tmp_path / "managed"
    base.mkdir()
    async for opened in open_world(base):
        yield opened


@pytest.fixture
async def managed(world: World) -> WorktreeRepo:
    remote = make_remote(
        world.base, "octo/app", {".github/biagent.yml": "setup: echo ready\n", "app.py": "x\n"}
    )
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-9", [repository])
    assert view.status == "ready"
    return view.repos[0]


async def run_bash_step(
    runner: AgentRunner, fake: FakeAnthropic, world: World, row: WorktreeRepo, command: str
) -> str:
    fake.add(scripted.tool_use("bash", {"command": command}), scripted.text("done"))
    context = AgentContext(
        session_key="pr:octo/app#9/batch:1",
        worktree=Path(row.path),
        task="Run the command.",
        stream="pr:octo/app#9",
        sandbox=await world.manager.command_sandbox(row),
    )
    result = await runner.run_step("implementer", context)
    assert result.status == "completed", result.error
    return fake.requests[1].tool_results()[0]["content"]


async def test_bash_gets_the_worktree_ports_and_caches_and_no_secret(
    runner: AgentRunner,
    fake: FakeAnthropic,
    world: World,
    managed: WorktreeRepo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    shown = await run_bash_step(runner, fake, world, managed, "env")
    assert managed.port_base is not None
    assert f"PORT={managed.port_base}" in shown
    assert f"BIAGENT_PORT_BASE={managed.port_base}" in shown
    cache = world.manager.cache_path(managed.repository_id)
    assert f"UV_CACHE_DIR={cache / 'uv'}" in shown
    assert f"npm_config_cache={cache / 'npm'}" in shown
    assert f"HOME={Path(managed.path).resolve()}" in shown
    for name, value in SECRETS.items():
        assert name not in shown and value not in shown


@pytest.mark.skipif(bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)")
async def test_bash_in_the_jail_commits_and_only_reads_the_cache(
    runner: AgentRunner, fake: FakeAnthropic, world: World, managed: WorktreeRepo
) -> None:
    worktree = Path(managed.path)
    shown = await run_bash_step(
        runner,
        fake,
        world,
        managed,
        'echo cached > "$PIP_CACHE_DIR/probe" || ls "$PIP_CACHE_DIR" && '
        "echo y >> app.py && "
        "git -c user.name=agent -c user.email=agent@example.com commit -qam 'agent change'",
    )
    assert "[exit code 0]" in shown and "no sandbox" not in shown
    assert "Read-only file system" in shown
    cache = world.manager.cache_path(managed.repository_id)
    assert not (cache / "pip" / "probe").exists()
    assert git(worktree, "log", "-1", "--format=%s").strip() == "agent change"
    assert git(worktree, "status", "--short").strip() == ""
