"""A pipeline's worktree session: one worktree per linked repository, on its own branch.

The branch is `biagent/<TICKET>-<slug of the summary>`. The session is made before the first
step that needs it, recorded on the pipeline (so a restart finds it again), held while a step
runs, and removed when the pipeline ends (its PR merged, or cancelled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.gitops.runner import run_git
from bot.isolation.sandbox import SandboxScope
from bot.worktrees.files import NOT_COMMITTED
from bot.worktrees.manager import WorktreeManager
from bot.worktrees.records import PushResult, SessionView
from storage import pipelines, repositories
from storage.database import Database
from storage.pipelines import Pipeline
from storage.repositories import Repository

SLUG_MAX = 40


class WorkspaceError(Exception):
    """The pipeline's worktrees cannot be made (no repository, setup failed, ...)."""


def branch_owner(ticket_key: str, summary: str) -> str:
    """`ACME-12-add-refunds-to-checkout`: the ticket key and a short slug of its summary."""
    slug = re.sub(r"[^a-z0-9]+", "-", summary.casefold()).strip("-")[:SLUG_MAX].strip("-")
    return f"{ticket_key}-{slug}" if slug else ticket_key


@dataclass(frozen=True, slots=True)
class Workspace:
    view: SessionView
    repositories: tuple[Repository, ...]

    @property
    def primary(self) -> Repository:
        return self.repositories[0]

    def path_of(self, repository: Repository) -> Path:
        return self.view.path_of(repository.id)


class PipelineWorkspace:
    def __init__(self, *, db: Database, worktrees: WorktreeManager) -> None:
        self.db = db
        self.worktrees = worktrees

    async def repositories_of(self, pipeline: Pipeline) -> tuple[Repository, ...]:
        found = []
        for name in pipeline.repositories:
            repository = await repositories.get_by_name(self.db, name)
            if repository is None:
                raise WorkspaceError(f"repository {name} is not registered with biagent")
            found.append(repository)
        if not found:
            raise WorkspaceError(f"{pipeline.ticket_key} has no repository linked")
        return tuple(found)

    async def ensure(self, pipeline: Pipeline, summary: str, stream: str) -> Workspace:
        """The pipeline's session, made on first use and found again after a restart."""
        linked = await self.repositories_of(pipeline)
        if pipeline.worktree_session_id is not None:
            view = await self.worktrees.get(pipeline.worktree_session_id)
            if view is not None and view.status == "ready":
                return Workspace(view, linked)
        owner = branch_owner(pipeline.ticket_key, summary)
        try:
            view = await self.worktrees.create_session(owner, linked, stream=stream)
        except Exception as error:
            raise WorkspaceError(f"worktrees for {owner}: {error}") from error
        await self.db.write(*pipelines.set_branch(pipeline.id, f"biagent/{owner}", view.id))
        return Workspace(view, linked)

    async def sandbox(self, workspace: Workspace) -> SandboxScope:
        row = next(r for r in workspace.view.repos if r.repository_id == workspace.primary.id)
        return await self.worktrees.command_sandbox(row)

    async def hold(self, workspace: Workspace, pipeline_id: int) -> None:
        await self.worktrees.hold(workspace.view.id, f"pipeline:{pipeline_id}")

    async def release(self, workspace: Workspace) -> None:
        await self.worktrees.release(workspace.view.id)

    async def push(self, workspace: Workspace, repository: Repository, message: str) -> PushResult:
        """Commit what the agents left uncommitted (with `message`), then push the branch."""
        await commit_all(workspace.path_of(repository), message)
        return await self.worktrees.push(workspace.view.id, repository_id=repository.id)

    async def remove(self, pipeline: Pipeline, reason: str, *, merged: bool) -> None:
        if pipeline.worktree_session_id is not None:
            await self.worktrees.cleanup_session(
                pipeline.worktree_session_id, reason, force_delete_branch=merged, force=True
            )


async def commit_all(worktree: Path, message: str) -> bool:
    """Commit every change in the worktree but the tools' leftovers; False when none."""
    await run_git("add", "--all", "--", ".", *NOT_COMMITTED, cwd=worktree)
    staged = await run_git(
        "diff", "--cached", "--quiet", "--no-ext-diff", cwd=worktree, check=False
    )
    if staged.returncode == 0:
        return False
    await run_git("commit", "--quiet", "--no-verify", "-m", message, cwd=worktree)
    return True
