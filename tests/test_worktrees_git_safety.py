"""biagent's own git runs outside the agents' jail, in repositories the jail wrote to: nothing
planted there may run. Two layers, each tested alone with real git: the jail keeps what steers
git read-only (bot/isolation/sandbox.py), and biagent's git commands switch off what a configuration
could run (bot/gitops/runner.py)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.agents.sandbox import BashPolicy, run_bash
from bot.gitops.runner import git_environment, run_git
from bot.isolation.sandbox import bwrap_path
from storage.repositories import Repository
from tests.worktree_helpers import Remote, World, git, make_remote, open_world

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)"
)
HOOKS = ("pre-commit", "post-commit", "pre-push", "reference-transaction", "post-checkout",
         "post-rewrite", "post-merge", "pre-rebase", "pre-auto-gc")  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path):
        yield opened


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    remote = make_remote(tmp_path, "octo/app", {"app.py": "print(1)\n"})
    remote.commit({"app.py": "print(2)\n"}, "feature", branch="feature")
    return remote


def write_payload(directory: Path, marker: Path) -> Path:
    """A program that leaves `marker` behind if anything ever runs it (and passes input on)."""
    payload = directory / "payload.sh"
    payload.write_text(f"#!/bin/sh\necho ran >> {marker}\ncat\n")
    payload.chmod(payload.stat().st_mode | stat.S_IXUSR)
    return payload


async def biagent_works_the_pull_request(world: World, remote: Remote, view_id: str) -> str:
    """What biagent does in a PR worktree after an agent ran: commit, push with the lease,
    follow a head someone else moved (fetch, rebase), push again, put the worktree back.
    Returns the commit the other person pushed."""
    view = await world.manager.get(view_id)
    assert view is not None
    worktree = Path(view.repos[0].path)
    (worktree / "ours.py").write_text("ours\n")
    await run_git("add", "--all", cwd=worktree)
    await run_git("commit", "--quiet", "-m", "ours", cwd=worktree)
    assert (await world.manager.push(view_id)).updated
    git("fetch", "-q", "origin", cwd=remote.work)
    git("checkout", "-q", "-B", "feature", "origin/feature", cwd=remote.work)
    theirs = remote.commit({"theirs.py": "theirs\n"}, "theirs", branch="feature")
    (worktree / "more.py").write_text("more\n")
    await run_git("add", "--all", cwd=worktree)
    await run_git("commit", "--quiet", "-m", "more", cwd=worktree)
    assert (await world.manager.follow_pull_request(view_id)).rebased
    assert (await world.manager.push(view_id)).updated
    await run_git("status", "--porcelain", cwd=worktree)
    await world.manager.discard_changes(view_id)
    return theirs


async def checkout(world: World, remote: Remote) -> tuple[Repository, str, Path]:
    repository = await world.register("octo/app", remote)
    view = await world.manager.checkout_pull_request(
        repository, pr_number=5, head_ref="feature", run_setup=False
    )
    return repository, view.id, Path(view.repos[0].path)


async def test_biagents_git_runs_nothing_a_repository_configuration_names(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    """As if an unjailed command had written the mirror's config and hooks."""
    marker = tmp_path / "payload-ran"
    payload = write_payload(tmp_path, marker)
    repository, view_id, _ = await checkout(world, remote)
    mirror = world.manager.mirror_path(repository)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in HOOKS:
        for directory in (hooks, mirror / "hooks"):
            (directory / hook).write_bytes(payload.read_bytes())
            (directory / hook).chmod(0o755)
    for key, value in (
        ("core.hooksPath", str(hooks)),
        ("core.fsmonitor", str(payload)),
        ("core.sshCommand", str(payload)),
        ("core.editor", str(payload)),
        ("gpg.program", str(payload)),
        ("commit.gpgSign", "true"),
        ("log.showSignature", "true"),
        ("remote.origin.uploadpack", str(payload)),
    ):
        git("config", key, value, cwd=mirror)
    await world.manager.ensure_mirror(repository)
    theirs = await biagent_works_the_pull_request(world, remote, view_id)
    assert not marker.exists()
    assert remote.sha("feature~1") == theirs


@needs_bwrap
async def test_the_jail_keeps_what_steers_git_read_only_and_git_commit_still_works(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    payload = write_payload(tmp_path, marker)
    repository, view_id, worktree = await checkout(world, remote)
    view = await world.manager.get(view_id)
    assert view is not None
    mirror = world.manager.mirror_path(repository)
    private = mirror / "worktrees" / worktree.name
    evil = tmp_path / "evil.git"
    git("init", "-q", "--bare", str(evil), cwd=tmp_path)
    git("config", "core.fsmonitor", str(payload), cwd=evil)
    attempts = {
        "hook": f"cp {payload} {mirror}/hooks/pre-push",
        "hook in the private dir": f"mkdir -p {private}/hooks && cp {payload} {private}/hooks/",
        "hooksPath": f"git config core.hooksPath {tmp_path}",
        "fsmonitor": f"git config core.fsmonitor {payload}",
        "sshCommand": f"git config core.sshCommand {payload}",
        "filter driver": f"git config filter.evil.clean {payload}",
        "gpg.program": f"git config gpg.program {payload}",
        "include.path": f"git config include.path {evil}/config",
        "info/attributes": f"echo '* filter=evil' > {mirror}/info/attributes",
        "config.worktree": f"echo '[core] fsmonitor = {payload}' > {private}/config.worktree",
        "commondir": f"echo {evil} > {private}/commondir",
        "gitdir": f"echo {tmp_path}/.git > {private}/gitdir",
        ".git pointer": f"echo 'gitdir: {evil}' > .git",
        ".git removed": "rm -f .git",
        "commondir of the mirror": f"echo {evil} > {mirror}/commondir",
        "private dir moved": f"mv {private} {private}-moved",
        "a file in worktrees/": f"mkdir {mirror}/worktrees/other",
    }
    script = "\n".join(
        f"if ( {command} ) 2>/dev/null; then echo '{name}: CHANGED'; else echo '{name}: refused';"
        " fi"
        for name, command in attempts.items()
    )
    script += (
        "\necho agent >> app.py && git -c user.name=agent -c user.email=agent@example.com"
        " commit -qam 'agent commit' && echo committed"
    )
    scope = await world.manager.command_sandbox(view.repos[0])
    result = await run_bash(worktree, script, BashPolicy(), scope=scope)
    assert result.isolated, result.output
    assert "CHANGED" not in result.output, result.output
    assert result.output.count(": refused") == len(attempts)
    assert "committed" in result.output
    assert git("log", "-1", "--format=%s", cwd=worktree) == "agent commit"
    assert (await world.manager.push(view_id)).updated
    assert remote.sha("feature") == git("rev-parse", "HEAD", cwd=worktree)
    theirs = await biagent_works_the_pull_request(world, remote, view_id)
    assert not marker.exists() and remote.sha("feature~1") == theirs


@needs_bwrap
async def test_the_jail_cannot_move_other_branches_or_damage_the_shared_objects(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    """The three attacks on the shared mirror, and a forged object: all refused, while the
    command's own commit still lands on its own branch (taken in by biagent afterwards)."""
    repository, view_id, worktree = await checkout(world, remote)
    view = await world.manager.get(view_id)
    assert view is not None
    mirror = world.manager.mirror_path(repository)
    main_sha = remote.sha("main")
    git("branch", "biagent/other-session", main_sha, cwd=mirror)
    git("repack", "-adq", cwd=mirror)
    packs_before = sorted(path.name for path in (mirror / "objects" / "pack").iterdir())
    assert packs_before
    elsewhere = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(elsewhere), cwd=tmp_path)
    script = f"""
    git update-ref refs/heads/biagent/other-session HEAD 2>/dev/null; echo "update-ref: $?"
    rm -rf {mirror}/objects/pack 2>/dev/null
    echo {elsewhere}/objects >> {mirror}/objects/info/alternates 2>/dev/null
    good=$(echo good | git hash-object --stdin)
    evil=$(echo evil | git hash-object -w --stdin)
    cd {mirror}/objects && mkdir -p $(echo $good | cut -c1-2) &&
      cp $(echo $evil | cut -c1-2)/$(echo $evil | cut -c3-) \\
         $(echo $good | cut -c1-2)/$(echo $good | cut -c3-) && cd {worktree}
    echo $evil > evil-name
    echo agent >> app.py && git -c user.name=agent -c user.email=agent@example.com \\
      commit -qam 'own commit' && echo committed
    """
    scope = await world.manager.command_sandbox(view.repos[0])
    result = await run_bash(worktree, script, BashPolicy(), scope=scope)
    assert result.isolated and "committed" in result.output, result.output
    assert "update-ref: 0" not in result.output
    assert git("rev-parse", "biagent/other-session", cwd=mirror) == main_sha
    assert sorted(path.name for path in (mirror / "objects" / "pack").iterdir()) == packs_before
    assert not (mirror / "objects" / "info" / "alternates").exists()
    good = git("hash-object", "--stdin", cwd=tmp_path, input_text="good\n")
    evil = (worktree / "evil-name").read_text().strip()
    assert git("cat-file", "-p", evil, cwd=mirror) == "evil"
    unknown = await run_git("cat-file", "-e", good, cwd=mirror, check=False)
    assert unknown.returncode != 0  # the forged object was not taken in
    # The own commit moved only the own branch, and HEAD is attached to it again.
    assert git("symbolic-ref", "HEAD", cwd=worktree) == "refs/heads/biagent/pr-5"
    assert git("log", "-1", "--format=%s", "biagent/pr-5", cwd=mirror) == "own commit"
    assert git("status", "--porcelain", "--untracked-files=no", cwd=worktree) == ""
    assert git("fsck", "--no-dangling", cwd=mirror) == ""


async def test_biagents_git_gets_no_secret_of_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-secret",
        "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----",
        "JIRA_API_TOKEN": "jira-secret",
        "BIAGENT_API_TOKEN": "api-secret",
        "GIT_DIR": str(tmp_path),
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    environment = git_environment()
    for name in secrets:
        assert name not in environment
    assert environment["LC_ALL"] == "C.UTF-8" and environment["PATH"]
    # And what git itself runs sees the same: an alias running a shell prints its environment.
    shown = await run_git("-c", "alias.showenv=!env", "showenv", cwd=tmp_path)
    for value in secrets.values():
        assert value not in shown.stdout
