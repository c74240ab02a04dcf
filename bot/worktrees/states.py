"""The states a worktree session, a worktree and a setup go through, as stored (the text in
worktree_sessions.status and worktree_repos.status) and as published (`worktree_status`)."""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    """A session's life: rows first, worktrees made, setup, then cleaned (or failed)."""

    CREATING = "creating"
    CREATED = "created"
    SETTING_UP = "setting_up"
    NEEDS_INPUT = "needs_input"
    READY = "ready"
    FAILED = "failed"
    CLEANING = "cleaning"
    CLEANED = "cleaned"


class RepoStatus(StrEnum):
    """One worktree of a session."""

    CREATING = "creating"
    CREATED = "created"
    NEEDS_INPUT = "needs_input"
    SETUP_RUNNING = "setup_running"
    SETUP_FAILED = "setup_failed"
    READY = "ready"
    REMOVED = "removed"


class SetupOutcome(StrEnum):
    """How setting one worktree up ended, when it did not fail."""

    READY = "ready"
    NEEDS_INPUT = "needs_input"  # a person was asked and the setup did not wait (or timed out)


class ProgressKind(StrEnum):
    """The `status` of a `worktree_status` event."""

    SETUP_OUTPUT = "setup_output"  # streamed lines of the setup command
    COPY_FILES = "copy_files"
    SETUP_DONE = "setup_done"
    SETUP_FAILED = "setup_failed"
    FAILED = "failed"  # the session could not be created
