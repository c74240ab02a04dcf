"""The sessions of the current API token: made, found, their tabs and UI state kept.

A session belongs to the token it was made with: its `owner` is derived from the token's
digest (bot/api_token.py), and every lookup names the owner, so a session of another token
(one rotated away) is not found: the API answers 404, as for a session that never was.

Two windows of one session write last-write-wins: tabs are replaced whole, in one transaction.
A page keeps its own part of the UI state (`ui_state["pages"][path]`), merged into the rest
(`merge_pages`, a compare-and-set that holds across instances), so a window on another page
never overwrites it with an older copy.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bot.clock import Clock
from bot.sessions.tabs import Tab, TabKind, checked_tabs
from storage import sessions as session_rows
from storage.database import Database
from storage.sessions import SessionRow, TabRow

UI_STATE_MAX_BYTES = 16 * 1024
PAGES_KEPT = 40  # pages whose UI state is kept, the ones used last (as web/static/session.js)


class SessionNotFound(LookupError):
    """No session of that id belongs to the current token."""


class UiStateTooLarge(ValueError):
    """A UI state larger than UI_STATE_MAX_BYTES once encoded."""


def owner_of(token_digest: str) -> str:
    """The owner key of the sessions made with the token whose SHA-256 is `token_digest`."""
    return hashlib.sha256(f"biagent-session-owner:{token_digest}".encode()).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def merged_pages(
    ui_state: Mapping[str, Any], pages: Mapping[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """`ui_state` with each page of `pages` put last in `ui_state["pages"]` (None: forgotten),
    the PAGES_KEPT used last kept; the rest of `ui_state` as it was."""
    before = ui_state.get("pages")
    kept = dict(before) if isinstance(before, dict) else {}
    for path, part in pages.items():
        kept.pop(path, None)
        if part is not None:
            kept[path] = part
    newest = list(kept)[-PAGES_KEPT:]
    return {**ui_state, "pages": {path: kept[path] for path in newest}}


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
        if not await session_rows.set_ui_state(
            self.db, session_id, self.owner, _checked_json(ui_state), now=self.clock.now()
        ):
            raise SessionNotFound(f"no session {session_id!r}")
        return ui_state

    async def merge_pages(
        self, session_id: str, pages: Mapping[str, dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Put these pages' UI state into the session's (`merged_pages`); the whole as kept.
        A compare-and-set on the stored text: a merge that another one (on any instance)
        overtook reads the new state and merges again, so two windows' pages both land."""
        while True:
            stored = await session_rows.ui_state_text(self.db, session_id, self.owner)
            if stored is None:
                raise SessionNotFound(f"no session {session_id!r}")
            merged = merged_pages(json.loads(stored), pages)
            if await session_rows.replace_ui_state(
                self.db,
                session_id,
                self.owner,
                expected_json=stored,
                ui_state_json=_checked_json(merged),
                now=self.clock.now(),
            ):
                return merged


def _checked_json(ui_state: Mapping[str, Any]) -> str:
    encoded = msgspec.json.encode(ui_state)
    if len(encoded) > UI_STATE_MAX_BYTES:
        raise UiStateTooLarge(
            f"ui_state is {len(encoded)} bytes as JSON; at most {UI_STATE_MAX_BYTES}"
        )
    return encoded.decode("utf-8")


def _tab(row: TabRow) -> Tab:
    return Tab(TabKind(row.kind), row.ref or None)
