"""What a pipeline's steps changed, read from real git: committed, uncommitted and untracked
changes against the worktree's base, bounded in size, a symlink shown as its target, hostile
text kept as text; and the pipeline page's diff part after a real pipeline edited a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bot.pipelines.diffs import Change, FileDiff, RepositoryDiff, repository_diff
from storage.worktrees import WorktreeRepo
from tests.helpers import API_TOKEN
from tests.pipelines.world import PipelineWorld
from tests.worktree_helpers import git, make_remote
from web.pipeline_pages import diff_lines

HOSTILE = '<img id="injected" src=x onerror="document.title=1">'


def worktree_row(path: Path, base_sha: str | None) -> WorktreeRepo:
    return WorktreeRepo(
        id=1, session_id="s", repository_id=1, path=str(path), branch="biagent/ACME-1",
        base_sha=base_sha, status="ready", push_url=None, push_ref=None, recorded_sha=None,
        pr_number=None, port_base=None, setup_command=None, setup_exit_code=None,
        setup_output=None, setup_seconds=None, size_bytes=None, size_measured_at=None,
        created_at="", updated_at="",
    )  # fmt: skip


def by_path(diff: RepositoryDiff) -> dict[str, FileDiff]:
    return {file.path: file for file in diff.files}


@pytest.fixture
def worktree(tmp_path: Path) -> tuple[Path, str]:
    """A real repository standing for a pipeline's worktree, and the commit it started from."""
    remote = make_remote(tmp_path, "shop", {"greet.py": "hi\n", "old.py": "gone\n"})
    return remote.work, git("rev-parse", "HEAD", cwd=remote.work)


async def test_committed_uncommitted_and_untracked_changes_each_show_against_the_base(
    worktree: tuple[Path, str],
) -> None:
    path, base = worktree
    (path / "added.py").write_text("new\n")
    (path / "old.py").unlink()
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "a step's commit", cwd=path)
    (path / "greet.py").write_text("hello\n")  # not committed yet
    (path / "notes.md").write_text(f"{HOSTILE}\n")  # not even added
    (path / "built.txt").write_text("ignored\n")  # gitignored: not a change
    (path / ".cache").mkdir()
    (path / ".cache" / "tool.bin").write_text("a tool's leftover\n")

    diff = await repository_diff("octo/shop", worktree_row(path, base), budget=100_000)

    files = by_path(diff)
    assert set(files) == {"added.py", "old.py", "greet.py", "notes.md"}
    assert files["added.py"].change is Change.ADDED and "+new" in (files["added.py"].patch or "")
    assert files["old.py"].change is Change.DELETED and "-gone" in (files["old.py"].patch or "")
    assert files["greet.py"].change is Change.MODIFIED
    assert "-hi\n+hello" in (files["greet.py"].patch or "")
    assert files["notes.md"].change is Change.UNTRACKED
    assert f"+{HOSTILE}" in (files["notes.md"].patch or "")
    assert diff.base_sha == base and diff.more == 0
    assert len({file.anchor for file in diff.files}) == 4
    assert git("status", "--porcelain", cwd=path).count("??") == 2  # nothing was added


async def test_past_the_budget_a_file_is_listed_with_its_size_and_a_symlink_is_not_followed(
    worktree: tuple[Path, str], tmp_path: Path
) -> None:
    path, base = worktree
    secret = tmp_path / "secret.pem"
    secret.write_text("PRIVATE KEY\n")
    (path / "big.txt").write_text("x" * 5000 + "\n")
    os.symlink(secret, path / "key.pem")
    (path / "greet.py").write_text("hello\n")

    diff = await repository_diff("octo/shop", worktree_row(path, base), budget=1000)

    files = by_path(diff)
    assert files["big.txt"].patch is None and files["big.txt"].too_large_bytes == 5001
    assert "-hi\n+hello" in (files["greet.py"].patch or "")
    key = files["key.pem"].patch or ""
    assert "new file mode 120000" in key and f"+{secret}" in key
    assert "PRIVATE KEY" not in key


async def test_a_carriage_return_in_a_file_does_not_split_its_patch(
    worktree: tuple[Path, str],
) -> None:
    path, base = worktree
    (path / "greet.py").write_text("hi\rdiff --git a/x b/x\n")
    (path / "old.py").write_text("still here\n")
    git("add", "-A", cwd=path)

    files = by_path(await repository_diff("octo/shop", worktree_row(path, base), budget=10_000))

    assert "diff --git a/x b/x" in (files["greet.py"].patch or "")
    assert (files["old.py"].patch or "").startswith("diff --git a/old.py b/old.py")
    assert "+still here" in (files["old.py"].patch or "")


async def test_without_a_base_or_a_worktree_it_says_why(tmp_path: Path) -> None:
    no_base = await repository_diff("octo/shop", worktree_row(tmp_path, None), budget=10)
    gone = await repository_diff("octo/shop", worktree_row(tmp_path / "gone", "a" * 40), budget=10)
    assert (no_base.note, gone.note) == ("its base commit is not known", "the worktree is gone")


def test_a_patch_reads_as_classed_lines() -> None:
    patch = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-old\n+new\n same\n"
    assert [kind for kind, _ in diff_lines(patch)] == [
        "meta", "meta", "meta", "hunk", "del", "add", "",
    ]  # fmt: skip


async def page_part(world: PipelineWorld, pipeline_id: int) -> str:
    client = world.app_client
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    response = await client.get(f"/pipelines/{pipeline_id}/diff")
    assert response.status == 200
    return await response.text()


async def test_the_pipeline_page_shows_what_its_steps_changed_escaped(world: PipelineWorld) -> None:
    await world.start()
    opened: dict[str, Any] = await world.open_pull_request()
    pipeline_id = opened["id"]
    [session] = (await world.api("GET", "/api/worktrees"))["worktrees"]
    worktree = Path(session["repositories"][0]["path"])
    (worktree / "notes.md").write_text(f"{HOSTILE}\n")

    part = await page_part(world, pipeline_id)

    assert 'data-path="greet.py" data-change="modified"' in part
    assert "-    return &#34;Hi &#34; + name" in part
    assert "+    return &#34;Hello &#34; + name" in part
    assert 'data-path="notes.md" data-change="untracked"' in part
    assert "<img id=" not in part and "+&lt;img id=&#34;injected&#34;" in part
    page = await (await world.app_client.get(f"/pipelines/{pipeline_id}")).text()
    assert '<section id="diff">' in page and 'data-path="greet.py"' in page
    [repository] = (await world.api("GET", f"/api/pipelines/{pipeline_id}/diff"))["diff"][
        "repositories"
    ]
    changes = {f["path"]: (f["change"], f["patch"]) for f in repository["files"]}
    assert changes["notes.md"] == ("untracked", changes["notes.md"][1])
    assert f"+{HOSTILE}" in changes["notes.md"][1]
    assert changes["greet.py"][0] == "modified"


async def test_a_pipeline_without_worktrees_says_so(world: PipelineWorld) -> None:
    await world.start()
    created = await world.create(await world.ticket(labels=("backend",)), start=False)
    part = await page_part(world, created["id"])
    assert "No step has made a worktree yet." in part
    assert (await world.app_client.get("/pipelines/999/diff")).status == 404
    await world.api("GET", "/api/pipelines/999/diff", status=404)
