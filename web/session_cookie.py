"""The browser session's cookie, `biagent_session`: set at login, read by GET /api/sessions/current.

It names the session, nothing more: every route still needs the API token, and a session is
found only among the token's own (bot/sessions/book.py). Like the token cookie (web/auth.py)
it is HttpOnly, SameSite=Strict, and Secure when the browser came over https (directly or
through a trusted proxy, web/forwarded.py).
"""

from __future__ import annotations

from aiohttp import web

from bot.sessions.book import SessionNotFound
from web.errors import ApiError
from web.keys import SESSIONS

SESSION_COOKIE = "biagent_session"
# As the token cookie's; bot/sessions/service.py forgets sessions unseen for longer.
MAX_AGE_S = 30 * 86400


def set_session_cookie(request: web.Request, response: web.StreamResponse, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=MAX_AGE_S,
    )


def cookie_session(request: web.Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


async def attach_session(request: web.Request, response: web.StreamResponse) -> None:
    """At login: keep the browser's session (or adopt `?session=`, another device's), else
    make one, and set its cookie. An adopted session must be this token's: 404 otherwise."""
    sessions = request.app.get(SESSIONS)
    if sessions is None:
        return
    wanted = request.query.get("session")
    if wanted:
        try:
            await sessions.book.seen(wanted)
        except SessionNotFound:
            raise ApiError(404, "not_found", "no such session for this token") from None
        set_session_cookie(request, response, wanted)
        return
    current = cookie_session(request)
    if current is not None:
        try:
            await sessions.book.seen(current)
            set_session_cookie(request, response, current)  # another 30 days
            return
        except SessionNotFound:
            pass  # of a token rotated away, or forgotten: a new one
    made = await sessions.book.create()
    set_session_cookie(request, response, made.id)
