"""The message types the GitHub App concern emits (docs/design.md, Events; bot.events.message)."""

from __future__ import annotations

from typing import ClassVar

from bot.events.message import Event


class InstallationUpdated(Event):
    """The app was installed, removed, suspended, or its repositories changed."""

    type_name: ClassVar[str] = "installation_updated"
    concern: ClassVar[str] = "github"
    installation_id: int
    account: str
    action: str
    repositories: list[str] | None = None
