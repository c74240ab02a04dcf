"""The API token that guards the API, the status page and the WebSocket.

BIAGENT_API_TOKEN wins when set. Otherwise one is generated on first start; the database keeps
only its SHA-256 (secrets never stored in clear), so it is printed once, with the login URL, when
it is made. `python -m bot rotate-token` makes a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from bot.config import Secret, Settings
from storage import meta
from storage.database import Database

TOKEN_HASH_KEY = "api_token_sha256"


def digest(token: str) -> str:
    # surrogateescape: a header with raw non-UTF-8 bytes is a wrong token (401), not a crash.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """Compares presented tokens with the expected one's digest, in constant time."""

    expected_digest: str

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(digest(presented), self.expected_digest)


async def prepare(db: Database, settings: Settings) -> tuple[TokenCheck, Secret | None]:
    """The token check to use, and the token itself when it was generated just now."""
    if settings.api_token is not None:
        return TokenCheck(digest(settings.api_token.reveal())), None
    stored = await meta.get_value(db, TOKEN_HASH_KEY)
    if stored is not None:
        return TokenCheck(stored), None
    return await rotate(db)


async def rotate(db: Database) -> tuple[TokenCheck, Secret]:
    token = secrets.token_urlsafe(32)
    await meta.set_value(db, TOKEN_HASH_KEY, digest(token))
    return TokenCheck(digest(token)), Secret(token)
