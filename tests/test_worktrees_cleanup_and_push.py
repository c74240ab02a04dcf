"""WorktreeManager with real git: cleanup of merged, closed, idle and held sessions, quotas,
pull request checkouts and pushes with a lease, the token kept off disk, and spare worktrees."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.config import Secret
from bot.gitops.runner import run_git
from bot.worktrees.cleanup import PullRequestState
from bot.worktrees.manager import PushRejected, QuotaExceeded
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from tests.worktree_helpers import (  # noqa: F401  (pytest fixtures, by name)
    Remote,
    World,
    git,
    open_world,
    remote_fixture,
    world_fixture,
)

TOKEN = "ghs_t0pS3cretInstallationToken42"


async def test_merged_pull_request_cleans_even_a_squash_merge(world: World, remote: Remote) -> None:
    remote.commit({"feature.py": "one\n"}, "feature work", branch="feature")
    repository = await world.register("octo/app", remote)
    view = await world.manager.checkout_pull_request(
        repository, pr_number=12, head_ref="feature", run_setup=False
    )
    worktree = Path(view.repos[0].path)
    (worktree / "feature.py").write_text("two\n")
    git("commit", "-qam", "address review", cwd=worktree)
    await world.manager.push(view.id)
    # A squash merge: main gets a new commit that does not contain the branch's commits.
    remote.commit({"feature.py": "two\n"}, "Squashed feature (#12)")
    cleaned = await world.manager.cleanup_for_pull_request(
        "octo/app", 12, PullRequestState(merged=True, closed=True)
    )
    assert cleaned == [view.id]
    assert not worktree.exists()
    mirror = world.manager.mirror_path(repository)
    assert "biagent/pr-12" not in git("branch", "--list", cwd=mirror)


async def test_closed_unmerged_keeps_a_branch_with_unpushed_work(
    world: World, remote: Remote
) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-10", [repository], run_setup=False)
    await world.manager.attach_pull_request(view.id, repository.id, 13)
    worktree = Path(view.repos[0].path)
    (worktree / "local.py").write_text("mine\n")
    git("add", "local.py", cwd=worktree)
    git("commit", "-qm", "never pushed", cwd=worktree)
    await world.manager.cleanup_for_pull_request(
        "octo/app", 13, PullRequestState(merged=False, closed=True)
    )
    assert not worktree.exists()
    mirror = world.manager.mirror_path(repository)
    assert "biagent/PROJ-10" in git("branch", "--list", cwd=mirror)
    [cleaned] = await world.events("worktree_session_cleaned")
    assert cleaned["kept_branches"] == ["octo/app:biagent/PROJ-10"]


async def test_open_pull_request_is_left_alone(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-11", [repository], run_setup=False)
    await world.manager.attach_pull_request(view.id, repository.id, 14)
    assert not await world.manager.cleanup_for_pull_request(
        "octo/app", 14, PullRequestState(merged=False, closed=False)
    )


async def test_scheduled_check_asks_for_the_pull_request_state(
    tmp_path: Path, remote: Remote
) -> None:
    asked: list[tuple[str, int]] = []

    async def lookup(repository: repository_store.Repository, number: int) -> PullRequestState:
        asked.append((repository.full_name, number))
        return PullRequestState(merged=True, closed=True)

    async for world in open_world(tmp_path, pull_request_state=lookup):
        repository = await world.register("octo/app", remote)
        view = await world.manager.create_session("PROJ-12", [repository], run_setup=False)
        await world.manager.attach_pull_request(view.id, repository.id, 15)
        assert await world.manager.check_and_cleanup_merged() == [view.id]
        assert asked == [("octo/app", 15)]


async def test_held_session_survives_cleanup_until_released(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-13", [repository], run_setup=False)
    await world.manager.hold(view.id, "pipeline 4")
    assert not await world.manager.cleanup_session(view.id, "try")
    await world.manager.release(view.id)
    assert await world.manager.cleanup_session(view.id, "try again")


async def test_idle_sessions_go_after_the_repository_ttl(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    await repository_store.update_settings(
        world.db, repository.id, idle_ttl_seconds=3600, now=world.clock.now()
    )
    view = await world.manager.create_session("PROJ-14", [repository], run_setup=False)
    await world.clock.advance(1800)
    assert await world.manager.cleanup_idle() == []
    await world.clock.advance(1801)
    assert await world.manager.cleanup_idle() == [view.id]


async def test_quota_cleans_the_idlest_session_or_refuses(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    await repository_store.update_settings(
        world.db, repository.id, quota_bytes=1, now=world.clock.now()
    )
    first = await world.manager.create_session("PROJ-15", [repository])
    second = await world.manager.create_session("PROJ-16", [repository])
    assert (await world.manager.get(first.id)).status == "cleaned"  # type: ignore[union-attr]
    await world.manager.hold(second.id, "review")
    with pytest.raises(QuotaExceeded):
        await world.manager.create_session("PROJ-17", [repository])


async def test_pull_request_checkout_records_its_sha_and_pushes_with_a_lease(
    world: World, remote: Remote, tmp_path: Path
) -> None:
    head = remote.commit({"feature.py": "one\n"}, "feature", branch="feature")
    repository = await world.register("octo/app", remote)
    view = await world.manager.checkout_pull_request(
        repository, pr_number=21, head_ref="feature", head_sha=head, run_setup=False
    )
    row = view.repos[0]
    worktree = Path(row.path)
    assert row.recorded_sha == head and git("rev-parse", "HEAD", cwd=worktree) == head
    (worktree / "feature.py").write_text("two\n")
    git("commit", "-qam", "fix", cwd=worktree)
    pushed = await world.manager.push(view.id, installation_token=TOKEN)
    assert pushed.updated and remote.sha("feature") == pushed.sha
    # Someone else pushes to the PR branch: our next push must not overwrite it.
    other = tmp_path / "other"
    git("clone", "-q", "-b", "feature", remote.url, str(other), cwd=tmp_path)
    (other / "theirs.py").write_text("theirs\n")
    git("add", "theirs.py", cwd=other)
    git("commit", "-qm", "theirs", cwd=other)
    git("push", "-q", "origin", "feature", cwd=other)
    theirs = remote.sha("feature")
    (worktree / "feature.py").write_text("three\n")
    git("commit", "-qam", "more", cwd=worktree)
    with pytest.raises(PushRejected):
        await world.manager.push(view.id)
    assert remote.sha("feature") == theirs


async def test_ticket_branch_push_creates_the_remote_branch(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-20", [repository], run_setup=False)
    worktree = Path(view.repos[0].path)
    (worktree / "x.py").write_text("x\n")
    git("add", "x.py", cwd=worktree)
    git("commit", "-qm", "x", cwd=worktree)
    pushed = await world.manager.push(view.id)
    assert remote.sha("biagent/PROJ-20") == pushed.sha


async def test_reused_pull_request_session_follows_a_new_head(world: World, remote: Remote) -> None:
    remote.commit({"f.py": "1\n"}, "one", branch="feature")
    repository = await world.register("octo/app", remote)
    first = await world.manager.checkout_pull_request(
        repository, pr_number=22, head_ref="feature", run_setup=False
    )
    newer = remote.commit({"f.py": "2\n"}, "two", branch="feature")
    second = await world.manager.checkout_pull_request(
        repository, pr_number=22, head_ref="feature", run_setup=False
    )
    assert second.id == first.id and second.repos[0].recorded_sha == newer
    assert git("rev-parse", "HEAD", cwd=Path(second.repos[0].path)) == newer


@pytest.mark.parametrize("spares", [0, 1])
async def test_a_new_pull_request_session_starts_from_the_fetched_head_not_a_kept_branch(
    tmp_path: Path, remote: Remote, spares: int
) -> None:
    """A branch kept from an earlier session (unpushed work on an older head) must not be
    checked out: pushed with a lease on the new head, it would replace the commits between."""
    remote.commit({"f.py": "1\n"}, "one", branch="feature")
    async for world in open_world(tmp_path / "w", spares_per_repository=spares):
        repository = await world.register("octo/app", remote)
        first = await world.manager.checkout_pull_request(
            repository, pr_number=24, head_ref="feature", run_setup=False
        )
        old = Path(first.repos[0].path)
        (old / "stale.py").write_text("never pushed\n")
        git("add", "stale.py", cwd=old)
        git("commit", "-qm", "never pushed", cwd=old)
        await world.manager.cleanup_session(first.id, "done")
        mirror = world.manager.mirror_path(repository)
        assert "biagent/pr-24" in git("branch", "--list", cwd=mirror)  # kept: unpushed work
        theirs = remote.commit({"f.py": "2\n"}, "two", branch="feature")
        if spares:
            assert await world.manager.spares_ready(repository) == 1
        second = await world.manager.checkout_pull_request(
            repository, pr_number=24, head_ref="feature", run_setup=False
        )
        worktree = Path(second.repos[0].path)
        assert second.repos[0].recorded_sha == theirs
        assert git("rev-parse", "HEAD", cwd=worktree) == theirs
        assert git("branch", "--show-current", cwd=worktree) == "biagent/pr-24"
        (worktree / "f.py").write_text("3\n")
        git("commit", "-qam", "ours", cwd=worktree)
        await world.manager.push(second.id)
        assert remote.sha("feature~1") == theirs
        assert "never pushed" not in git("log", "--format=%s", "feature", cwd=remote.bare)
        await world.manager.close()


async def test_the_token_is_found_nowhere_on_disk(world: World, remote: Remote) -> None:
    remote.commit({"feature.py": "one\n"}, "feature", branch="feature")
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session(
        "PROJ-30", [repository], installation_token=Secret(TOKEN)
    )
    pr = await world.manager.checkout_pull_request(
        repository, pr_number=31, head_ref="feature", installation_token=TOKEN
    )
    worktree = Path(pr.repos[0].path)
    (worktree / "feature.py").write_text("two\n")
    git("commit", "-qam", "fix", cwd=worktree)
    await world.manager.push(pr.id, installation_token=TOKEN)
    await world.manager.ensure_mirror(repository, installation_token=TOKEN)
    forms = [TOKEN.encode(), base64.b64encode(f"x-access-token:{TOKEN}".encode())]
    scanned = 0
    for path in [*world.manager.root.rglob("*"), *world.base.glob("biagent.db*")]:
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            scanned += 1
            assert not any(form in content for form in forms), path
    assert scanned > 20 and view.status == "ready"
    config = (world.manager.mirror_path(repository) / "config").read_text()
    assert "extraheader" not in config.lower() and remote.url in config


async def test_git_sees_the_token_only_for_the_command(tmp_path: Path) -> None:
    shown = await run_git("config", "--get", "http.extraHeader", cwd=tmp_path, token=Secret(TOKEN))
    expected = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert shown.stdout.strip() == "********"  # scrubbed from what we keep
    plain = await run_git("config", "--get", "http.extraHeader", cwd=tmp_path, check=False)
    assert plain.returncode == 1 and expected not in plain.stdout


async def test_a_spare_worktree_is_moved_into_place_and_refilled(
    tmp_path: Path, remote: Remote
) -> None:
    async for world in open_world(tmp_path, spares_per_repository=1):
        repository = await world.register("octo/app", remote)
        await world.manager.create_session("PROJ-40", [repository])
        assert await world.manager.spares_ready(repository) == 1
        spare_root = world.manager.spares_dir / repository.slug
        [spare] = list(spare_root.iterdir())
        newer = remote.commit({"src/app.py": "print(2)\n"}, "newer")
        view = await world.manager.create_session("PROJ-41", [repository])
        worktree = Path(view.repos[0].path)
        assert not spare.exists() and worktree.parent.parent == world.manager.sessions_dir
        assert git("branch", "--show-current", cwd=worktree) == "biagent/PROJ-41"
        assert git("rev-parse", "HEAD", cwd=worktree) == newer
        assert (worktree / "src/app.py").read_text() == "print(2)\n"
        assert git("status", "--porcelain", cwd=worktree) == ""
        assert "locked biagent session" in git(
            "worktree", "list", "--porcelain", cwd=world.manager.mirror_path(repository)
        )
        assert await world.manager.spares_ready(repository) == 1
        await world.manager.reconcile()
        assert not spare_root.exists()
        await world.manager.close()


async def test_a_session_being_cleaned_cannot_be_held(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-8", [repository], run_setup=False)
    await worktree_store.set_session_status(world.db, view.id, "cleaning", now=world.clock.now())
    held = await worktree_store.hold_session(world.db, view.id, "job-1", now=world.clock.now())
    assert held is False
