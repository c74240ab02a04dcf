"""The repositories biagent may check out: registering, unregistering, linking to tickets.

What `/api/repositories` changes goes through here (docs/design.md, Layers: web -> bot -> storage):
a registration writes the record, its quota and idle TTL, passes setup answers to the worktree
manager, and links the tickets named with it. Reads for listing stay with the routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import Clock
from bot.worktrees.manager import WorktreeManager
from storage import repositories as repository_store
from storage.database import Database
from storage.repositories import Repository


class UnknownRepository(LookupError):
    """A repository named by owner/name is not registered."""

    def __init__(self, full_name: str) -> None:
        super().__init__(f"{full_name} is not registered")
        self.full_name = full_name


@dataclass(frozen=True, slots=True)
class Registration:
    """A repository to register (or update), with what may come along with it."""

    full_name: str
    clone_url: str
    default_branch: str | None = None
    installation_id: int | None = None
    quota_bytes: int | None = None
    idle_ttl_seconds: int | None = None
    setup_command: str | None = None
    test_command: str | None = None
    tickets: Sequence[str] = ()


class RepositoryRegistry:
    """Writes the repository records; the worktree manager does the work on disk."""

    def __init__(self, *, db: Database, clock: Clock, worktrees: WorktreeManager) -> None:
        self.db = db
        self.clock = clock
        self.worktrees = worktrees

    async def register(self, registration: Registration) -> tuple[Repository, bool]:
        """The stored repository, and whether it is new (else it was updated)."""
        existed = await repository_store.get_by_name(self.db, registration.full_name) is not None
        repository = await repository_store.upsert(
            self.db,
            full_name=registration.full_name,
            clone_url=registration.clone_url,
            default_branch=registration.default_branch,
            installation_id=registration.installation_id,
            now=self.clock.now(),
        )
        if registration.quota_bytes is not None or registration.idle_ttl_seconds is not None:
            await repository_store.update_settings(
                self.db,
                repository.id,
                quota_bytes=registration.quota_bytes,
                idle_ttl_seconds=registration.idle_ttl_seconds,
                now=self.clock.now(),
            )
        if registration.setup_command is not None or registration.test_command is not None:
            await self.worktrees.answer_setup(
                repository.id,
                setup_command=registration.setup_command,
                test_command=registration.test_command,
                answered_by="api",
            )
        for ticket_key in registration.tickets:
            linked = [repo.id for repo in await repository_store.for_ticket(self.db, ticket_key)]
            await repository_store.link_ticket(self.db, ticket_key, [*linked, repository.id])
        return await self.reread(repository), not existed

    async def reread(self, repository: Repository) -> Repository:
        """The record as stored now (after the writes of a registration or an answer)."""
        fresh = await repository_store.get(self.db, repository.id)
        if fresh is None:
            raise UnknownRepository(repository.full_name)
        return fresh

    async def unregister(self, repository: Repository, *, force: bool = False) -> None:
        """Forget the repository's worktrees (WorktreeBusy while some are live, unless
        `force`), then its record."""
        await self.worktrees.forget_repository(repository, force=force)
        await repository_store.delete(self.db, repository.id)

    async def link_ticket(self, ticket_key: str, full_names: Sequence[str]) -> list[Repository]:
        """Set the repositories a ticket's work touches; UnknownRepository for a name that is
        not registered (and then nothing changes). The linked repositories after the change."""
        ids = []
        for full_name in full_names:
            found = await repository_store.get_by_name(self.db, full_name)
            if found is None:
                raise UnknownRepository(full_name)
            ids.append(found.id)
        await repository_store.link_ticket(self.db, ticket_key, ids)
        return await repository_store.for_ticket(self.db, ticket_key)
