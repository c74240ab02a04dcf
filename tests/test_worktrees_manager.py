"""WorktreeManager with real git: mirrors, sessions, setup, cleanup, reconciliation."""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Secret
from bot.gitops.runner import run_git
from bot.isolation import sandbox
from bot.worktrees.cleanup import PullRequestState
from bot.worktrees.manager import PushRejected, QuotaExceeded, WorktreeSetupError
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from tests.worktree_helpers import Remote, World, git, make_remote, open_world

TOKEN = "ghs_t0pS3cretInstallationToken42"
SETUP_YML = "setup: echo built > built.txt && echo PORT=$PORT && echo line2\ntest: make test\n"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path):
        yield opened


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(
        tmp_path, "octo/app", {".github/biagent.yml": SETUP_YML, "src/app.py": "print(1)\n"}
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


async def test_a_session_being_cleaned_cannot_be_held(world: World, remote: Remote) -> None:
    repository = await world.register("octo/app", remote)
    view = await world.manager.create_session("PROJ-8", [repository], run_setup=False)
    await worktree_store.set_session_status(world.db, view.id, "cleaning", now=world.clock.now())
    held = await worktree_store.hold_session(world.db, view.id, "job-1", now=world.clock.now())
    assert held is False
