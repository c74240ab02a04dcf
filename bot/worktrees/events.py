"""The message types the worktree manager emits (docs/design.md, Events), each on
its session's stream."""

from __future__ import annotations

from typing import ClassVar

from bot.events.message import Event
from bot.worktrees.states import ProgressKind


class WorktreeSessionCreating(Event):
    """A worktree session is being created."""

    type_name: ClassVar[str] = "worktree_session_creating"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    repositories: list[str]
    owner: str
    branch: str


class WorktreeRepoCreated(Event):
    """A repository's worktree exists (locked, on its own branch, with a block of ports)."""

    type_name: ClassVar[str] = "worktree_repo_created"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    repository: str
    path: str
    branch: str
    ports: list[int | None]  # first and last of its block


class WorktreeSetupStarted(Event):
    """Setup began in a worktree (command empty: nothing to run)."""

    type_name: ClassVar[str] = "worktree_setup_started"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    repository: str
    command: str
    source: str
    test_command: str | None = None


class WorktreeSessionReady(Event):
    """A worktree session is ready."""

    type_name: ClassVar[str] = "worktree_session_ready"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    paths: list[str]


class PipelineNeedsInput(Event):
    """Setup needs a person's answer to go on."""

    type_name: ClassVar[str] = "pipeline_needs_input"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    question: str
    request_id: str
    repository: str
    choices: list[str]


class WorktreeSessionCleaned(Event):
    """A worktree session was removed."""

    type_name: ClassVar[str] = "worktree_session_cleaned"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    reason: str
    freed_bytes: int
    kept_branches: list[str]


class WorktreeStatus(Event):
    """Progress of a worktree session: setup_output (streamed lines), copy_files, setup_done,
    setup_failed, failed."""

    type_name: ClassVar[str] = "worktree_status"
    concern: ClassVar[str] = "worktrees"
    session_id: str
    status: ProgressKind
    detail: str | None = None
    repository: str | None = None


class UserInputRequest(Event):
    """A person's input is requested."""

    type_name: ClassVar[str] = "user_input_request"
    concern: ClassVar[str] = "worktrees"
    request_id: str
    question: str
    choices: list[str]
    repository: str
    repository_id: int
    session_id: str
    answer_url: str
