"""Builds the WorktreeManager from the settings, for the app factory (web/app.py)."""

from __future__ import annotations

from pathlib import Path

from bot.clock import Clock
from bot.config import Secret, Settings
from bot.events.bus import EventBus
from bot.github.connection import GitHubConnection
from bot.github.credentials import credentials_path
from bot.worktrees.cleanup import github_pull_request_state
from bot.worktrees.manager import TokenSource, WorktreeManager
from bot.worktrees.options import WorktreeOptions
from storage.database import Database, database_file
from storage.repositories import Repository

SWEEP_EVERY_S = 600.0


def installation_tokens(github: GitHubConnection) -> TokenSource:
    """The repository's installation token (cached by the GitHub App client), or None (no App
    yet, or no installation)."""

    async def token_for(repository: Repository) -> Secret | None:
        if github.app is None or repository.installation_id is None:
            return None
        return (await github.app.installation_token(repository.installation_id)).token

    return token_for


def hidden_from_commands(settings: Settings) -> list[Path]:
    """Files a sandboxed command must not read: the database, its journals, the app's key (the
    saved App's file too, whether or not it exists yet: the manifest flow may write it later).
    A PostgreSQL database has no file here to hide."""
    database = database_file(settings.database_url)
    hidden = (
        [] if database is None else [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    )
    hidden.append(credentials_path(settings))
    if settings.github_private_key_path is not None:
        hidden.append(settings.github_private_key_path)
    return hidden


def build_manager(
    settings: Settings, db: Database, bus: EventBus, clock: Clock, github: GitHubConnection
) -> WorktreeManager:
    options = WorktreeOptions.from_settings(
        settings, hidden_paths=tuple(hidden_from_commands(settings))
    )
    return WorktreeManager(
        db=db,
        bus=bus,
        clock=clock,
        options=options,
        token_source=installation_tokens(github),
        pull_request_state=github_pull_request_state(github),
        instance_id=settings.instance_id,
    )
