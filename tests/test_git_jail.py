"""The git jail of a linked worktree (bot/isolation/git_jail.py, `enter_git_jail`/`leave_git_jail`),
with real git and real bubblewrap: whatever the command does to HEAD, its object directory or
the process running it, the worktree ends on its own branch, the branch only moves to a commit
whose objects are all in the mirror, and nothing the command wrote is read unbounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.gitops.runner import run_git
from bot.isolation import jail_objects
from bot.isolation.git_guard import JAIL_OBJECTS
from bot.isolation.git_jail import finish_interrupted_git_jail
from bot.isolation.jail_files import JAIL_RECORDS
from bot.isolation.sandbox import SandboxResult, bwrap_path, run_command
from tests.worktree_helpers import (
    GIT_ENV,
    Remote,
    World,
    git,
    lock_released,
    make_remote,
    open_world,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)"
)
AGENT = {
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "agent@example.com",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "agent@example.com",
}


@dataclass
class Linked:
    mirror: Path
    worktree: Path
    private: Path

    async def run(self, command: str, **options: object) -> SandboxResult:
        return await run_command(
            command, self.worktree, writable_paths=[self.private], isolation="bwrap",
            env=AGENT, **options,  # type: ignore[arg-type]
        )  # fmt: skip

    def sha(self, ref: str) -> str:
        return git("rev-parse", ref, cwd=self.mirror)


@pytest.fixture
def linked(tmp_path: Path) -> Linked:
    """A bare mirror (objects packed) with a linked worktree on the branch `job`, and a
    branch `victim` standing for another session's."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    (seed / "a.txt").write_text("hi\n")
    git("add", "a.txt", cwd=seed)
    git("commit", "-qm", "init", cwd=seed)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--bare", str(seed), str(mirror), cwd=tmp_path)
    git("worktree", "add", "-q", "-b", "job", str(tmp_path / "wt"), "main", cwd=mirror)
    git("branch", "victim", "main", cwd=mirror)
    git("repack", "-adq", cwd=mirror)
    return Linked(mirror, tmp_path / "wt", mirror / "worktrees" / "wt")


COMMIT = "echo more >> a.txt && git commit -qam 'agent commit' && git rev-parse HEAD"
PROJECT = Path(__file__).resolve().parent.parent
_RUN_ONE = """
import asyncio, json, sys
from pathlib import Path
from bot.isolation.sandbox import run_command
spec = json.loads(sys.argv[1])
asyncio.run(run_command(
    spec["command"], Path(spec["cwd"]), env=spec["env"],
    writable_paths=[Path(path) for path in spec["writable"]], isolation="bwrap",
))
"""


async def commit_then_crash(
    worktree: Path, writable: list[Path], env: dict[str, str], command: str = COMMIT
) -> str:
    """Run `command` in the jail from a process of its own, SIGKILLed once the command has
    committed: the jail is never left, as after a real crash. Returns the commit's sha once
    the command is gone too (bwrap --die-with-parent takes it along: the flock it holds on
    `.alive` goes with the last of its processes)."""
    marker = worktree / ".committed"
    alive = worktree / ".alive"
    spec = {
        "command": f"exec 9>{alive}; flock 9; {command} > {marker}; sleep 60",
        "cwd": str(worktree),
        "env": env,
        "writable": [str(path) for path in writable],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RUN_ONE, json.dumps(spec), cwd=PROJECT
    )
    try:
        await wait_until(
            lambda: marker.exists() and marker.read_text().strip(), what="the commit in the jail"
        )
    finally:
        process.kill()
        await process.wait()
    await wait_until(lambda: lock_released(alive), what="the jailed command to die")
    commit = marker.read_text().strip().splitlines()[-1]
    marker.unlink()
    alive.unlink()
    return commit


async def test_a_deep_tree_and_a_rewritten_head_leave_head_on_the_own_branch(
    linked: Linked,
) -> None:
    """The object dir the command fills can be too deep for a recursive removal: HEAD is put
    back first anyway, so biagent's own commit afterwards moves the job's branch only."""
    victim = linked.sha("victim")
    script = (
        "python3 -c \"import os; os.chdir(os.popen('git rev-parse --git-path objects')"
        ".read().strip())\n"
        "for _ in range(3000): os.mkdir('x'); os.chdir('x')\" && "
        f"printf 'ref: refs/heads/victim\\n' > {linked.private}/HEAD && echo done"
    )
    result = await linked.run(script)
    assert "done" in result.output, result.output
    assert (linked.private / "HEAD").read_text() == "ref: refs/heads/job\n"
    (linked.worktree / "b.txt").write_text("ours\n")
    await run_git("add", "b.txt", cwd=linked.worktree)
    await run_git("commit", "-qm", "ours", cwd=linked.worktree)
    assert linked.sha("victim") == victim
    assert git("log", "-1", "--format=%s", "job", cwd=linked.mirror) == "ours"
    again = await linked.run(COMMIT)
    assert again.ok, again.output
    assert linked.sha("job") == again.output.strip().splitlines()[-1]
    assert not (linked.private / JAIL_OBJECTS).exists()


@pytest.mark.parametrize("kind", ["detached", "unborn"])
async def test_without_a_branch_head_is_restored_exactly(linked: Linked, kind: str) -> None:
    if kind == "detached":
        before = f"{linked.sha('main')}\n"
    else:
        before = "ref: refs/heads/never-born\n"
    (linked.private / "HEAD").write_text(before)
    result = await linked.run(
        f"printf 'ref: refs/heads/victim\\n' > {linked.private}/HEAD; echo done"
    )
    assert "done" in result.output, result.output
    assert (linked.private / "HEAD").read_text() == before


async def test_a_leave_a_crash_skipped_is_finished_by_the_next_command(linked: Linked) -> None:
    commit = await commit_then_crash(linked.worktree, [linked.private], AGENT)
    assert (linked.private / "HEAD").read_text().strip() == commit  # still detached
    second = await linked.run("git status --short && git log -1 --format=%s")
    assert second.ok and "agent commit" in second.output, second.output
    assert linked.sha("job") == commit
    assert git("symbolic-ref", "HEAD", cwd=linked.worktree) == "refs/heads/job"
    assert git("status", "--porcelain", cwd=linked.worktree) == ""
    assert git("fsck", "--no-dangling", cwd=linked.mirror) == ""
    assert not (linked.mirror / JAIL_RECORDS / "wt").exists()


async def test_a_crashed_leave_is_finished_at_start_up(linked: Linked) -> None:
    commit = await commit_then_crash(linked.worktree, [linked.private], AGENT)
    assert await finish_interrupted_git_jail(linked.worktree)
    assert not await finish_interrupted_git_jail(linked.worktree)  # once only
    assert linked.sha("job") == commit
    assert git("status", "--porcelain", cwd=linked.worktree) == ""
    git("repack", "-adq", cwd=linked.mirror)
    assert git("fsck", "--no-dangling", cwd=linked.mirror) == ""


async def test_a_record_of_a_removed_worktree_of_the_same_name_is_dropped(
    linked: Linked,
) -> None:
    records = linked.mirror / JAIL_RECORDS
    records.mkdir()
    stale = {"head": "ref: refs/heads/victim", "ref": "refs/heads/victim", "sha": "0" * 40}
    (records / "wt").write_text(json.dumps({**stale, "left": None, "private": -1}))
    result = await linked.run(COMMIT)
    assert result.ok, result.output
    assert git("symbolic-ref", "HEAD", cwd=linked.worktree) == "refs/heads/job"
    assert linked.sha("job") == result.output.strip().splitlines()[-1]
    assert not (records / "wt").exists()


async def test_a_cancel_after_the_commit_still_takes_it_in(linked: Linked) -> None:
    marker = linked.worktree / "committed"
    running = asyncio.create_task(linked.run(f"{COMMIT} > {marker}; sleep 30"))
    await wait_until(
        lambda: marker.exists() and marker.read_text().strip(), what="the commit in the jail"
    )
    record = linked.mirror / JAIL_RECORDS / "wt"
    assert record.exists()  # the jail is entered, not yet left
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # The shielded leave finishes on its own.
    await wait_until(lambda: not record.exists(), what="the jail to be left")
    assert linked.sha("job") == marker.read_text().strip()
    assert git("symbolic-ref", "HEAD", cwd=linked.worktree) == "refs/heads/job"


async def test_a_commit_naming_a_missing_tree_does_not_move_the_branch(linked: Linked) -> None:
    old = linked.sha("job")
    script = (
        "c=$(printf 'tree %s\\nparent %s\\nauthor a <a@x> 1 +0000\\ncommitter a <a@x> 1 +0000"
        f"\\n\\nbroken\\n' {'1' * 40} {old} | git hash-object -t commit -w --stdin) && "
        f"echo $c > {linked.private}/HEAD && echo $c"
    )
    result = await linked.run(script)
    assert result.ok, result.output
    assert linked.sha("job") == old
    assert (linked.private / "HEAD").read_text() == "ref: refs/heads/job\n"
    git("repack", "-adq", cwd=linked.mirror)
    assert (await linked.run("git status --short && echo fine")).ok


async def test_stale_locks_of_a_killed_command_are_removed(linked: Linked) -> None:
    script = (
        f"touch {linked.private}/HEAD.lock {linked.private}/index.lock"
        f" && ls {linked.private}; sleep 30"
    )
    result = await linked.run(script, timeout_s=1.0)
    assert result.timed_out
    assert "HEAD.lock" in result.output and "index.lock" in result.output  # they were there
    assert not (linked.private / "HEAD.lock").exists()
    assert not (linked.private / "index.lock").exists()
    assert (await linked.run(COMMIT)).ok


def loose_blob(size: int) -> tuple[str, bytes]:
    content = b"blob %d\0" % size + b"\0" * size
    return hashlib.sha1(content).hexdigest(), zlib.compress(content, 9)


async def test_a_zlib_bomb_is_dropped_at_the_cap(
    linked: Linked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, compressed = loose_blob(8 * 1024 * 1024)  # 8 MB inflated from about 8 kB
    bomb = linked.worktree / "bomb"  # /tmp is the jail's own
    bomb.write_bytes(compressed)
    monkeypatch.setattr(jail_objects, "MAX_JAIL_OBJECT_BYTES", 1024 * 1024)
    script = (
        f"d=$(git rev-parse --git-path objects)/{name[:2]} && mkdir -p $d && "
        f"cp {bomb} $d/{name[2:]} && echo planted"
    )
    assert "planted" in (await linked.run(script)).output
    assert not (linked.mirror / "objects" / name[:2] / name[2:]).exists()
    # The same object within the cap is a good one: it is the cap that dropped it.
    target = tmp_path / "taken" / name[:2] / name[2:]
    target.parent.parent.mkdir()
    monkeypatch.setattr(jail_objects, "MAX_JAIL_OBJECT_BYTES", 16 * 1024 * 1024)
    assert jail_objects.copy_verified(bomb, name, target)
    assert target.read_bytes() == compressed


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path):
        yield opened


async def test_reconcile_finishes_a_jail_the_crash_left(world: World, tmp_path: Path) -> None:
    remote: Remote = make_remote(tmp_path, "octo/app", {"app.py": "print(1)\n"})
    repository = await world.register("octo/app", remote)
    view = await world.manager.checkout_pull_request(
        repository, pr_number=5, head_ref="main", run_setup=False
    )
    worktree = Path(view.repos[0].path)
    mirror = world.manager.mirror_path(repository)
    scope = await world.manager.command_sandbox(view.repos[0])

    commit = await commit_then_crash(
        worktree,
        list(scope.writable_paths),
        {**scope.env, **AGENT},
        COMMIT.replace("a.txt", "app.py"),
    )
    report = await world.manager.reconcile()
    assert view.id in report.repaired
    branch = git("symbolic-ref", "--short", "HEAD", cwd=worktree)
    assert git("rev-parse", branch, cwd=mirror) == commit
    assert git("status", "--porcelain", cwd=worktree) == ""
    assert GIT_ENV  # the helpers' git ran with a test identity
