"""The sessions of the current API token: made, found, their tabs and UI state kept.

A session belongs to the token it was made with: its `owner` is derived from the token's
digest (bot/api_token.py), and every lookup names the owner, so a session of another token
(one rotated away) is not found: the API answers 404, as for a session that never was.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bot.clock import Clock
from bot.sessions.tabs import Tab, TabKind, checked_tabs
from storage import sessions as session_rows
from storage.database import Database
from storage.sessions import SessionRow, TabRow

UI_STATE_MAX_BYTES = 16 * 1024


class SessionNotFound(LookupError):
    """No session of that id belongs to the current token."""


class UiStateTooLarge(ValueError):
    """A UI state larger than UI_STATE_MAX_BYTES once encoded."""


def owner_of(token_digest: str) -> str:
    """The owner key of the sessions made with the token whose SHA-256 is `token_digest`."""
    return hashlib.sha256(f"biagent-session-owner:{token_digest}".encode()).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class SessionBook:
    db: Database
    clock: Clock
    owner: str
    new_id: Callable[[], str] = new_session_id

    async def create(self) -> SessionRow:
        return await session_rows.create(self.db, self.new_id(), self.owner, now=self.clock.now())

    async def find(self, session_id: str) -> SessionRow:
        found = await session_rows.get(self.db, session_id, self.owner)
        if found is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return found

    async def seen(self, session_id: str) -> None:
        """The session is in use now (a socket named it, a page restored it)."""
        if not await session_rows.touch(self.db, session_id, self.owner, now=self.clock.now()):
            raise SessionNotFound(f"no session {session_id!r}")

    async def tabs(self, session_id: str) -> list[Tab]:
        await self.find(session_id)
        return [_tab(row) for row in await session_rows.tabs(self.db, session_id)]

    async def set_tabs(self, session_id: str, tabs: Sequence[Tab]) -> list[Tab]:
        """Replace the session's tabs (checked: BadTab) and return them as stored."""
        chosen = checked_tabs(tabs)
        rows = [TabRow(tab.kind.value, tab.ref or "") for tab in chosen]
        if not await session_rows.replace_tabs(
            self.db, session_id, self.owner, rows, now=self.clock.now()
        ):
            raise SessionNotFound(f"no session {session_id!r}")
        return chosen

    async def ui_state(self, session_id: str) -> dict[str, Any]:
        return (await self.find(session_id)).ui_state

    async def set_ui_state(self, session_id: str, ui_state: dict[str, Any]) -> dict[str, Any]:
        encoded = msgspec.json.encode(ui_state)
        if len(encoded) > UI_STATE_MAX_BYTES:
            raise UiStateTooLarge(
                f"ui_state is {len(encoded)} bytes as JSON; at most {UI_STATE_MAX_BYTES}"
            )
        if not await session_rows.set_ui_state(
            self.db, session_id, self.owner, encoded.decode("utf-8"), now=self.clock.now()
        ):
            raise SessionNotFound(f"no session {session_id!r}")
        return ui_state


def _tab(row: TabRow) -> Tab:
    return Tab(TabKind(row.kind), row.ref or None)
