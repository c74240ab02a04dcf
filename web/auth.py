"""The API token check on every route but `/healthz`, `/readyz`, `/webhooks/*`, `/login` and the
GitHub App setup's callback (which only sends the browser on, web/setup_github.py).

A token comes as `Authorization: Bearer <token>`, as the `biagent_token` cookie that
`/login?token=` sets, or (for `/ws` only, where browsers cannot set headers) as `?token=`. A
cookie-authenticated WebSocket must also come from our own origin (cross-site WebSocket
hijacking), and so must a cookie-authenticated POST, PUT, PATCH or DELETE (CSRF): browsers send
`Origin` with each of those, so one without it is refused too. A Bearer token is no ambient
credential, and requests carrying one are not checked. The cookie is `Secure` when the browser
came over https, directly or through a trusted proxy (web/forwarded.py). Login also sets the
browser session's cookie (web/session_cookie.py), which names a session and opens nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from web.errors import Handler, error_response
from web.keys import TOKEN_CHECK
from web.session_cookie import attach_session

COOKIE = "biagent_token"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/setup/github/callback"})
OPEN_PREFIXES = ("/webhooks/",)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def presented_token(request: web.Request) -> tuple[str | None, str]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), "bearer"
    if request.path == "/ws" and request.query.get("token"):
        return request.query["token"], "query"
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie, "cookie"
    return None, "none"


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        return urlsplit(origin).netloc == request.host
    except ValueError:  # "http://[::1": no origin of ours, refused like a foreign one
        return False


def _names_own_origin(request: web.Request) -> bool:
    """A state-changing request that relies on the cookie must say it came from our pages."""
    return "Origin" in request.headers and _same_origin(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_open(request.path):
        return await handler(request)
    token, source = presented_token(request)
    if not request.app[TOKEN_CHECK].accepts(token):
        if "text/html" in request.headers.get("Accept", "") and request.method == "GET":
            return web.Response(
                status=401,
                content_type="text/html",
                text="<!doctype html><title>biagent: log in</title><h1>Log in</h1>"
                "<p>Open the login URL that biagent printed at start-up "
                "(<code>/login?token=...</code>), or send "
                "<code>Authorization: Bearer &lt;BIAGENT_API_TOKEN&gt;</code>.</p>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        response = error_response(
            401, "unauthorized", "a valid API token is required (Authorization: Bearer ...)"
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if source == "cookie" and request.path == "/ws" and not _same_origin(request):
        return error_response(403, "forbidden", "cross-origin WebSocket with a cookie refused")
    if source == "cookie" and request.method in STATE_CHANGING and not _names_own_origin(request):
        return error_response(
            403, "forbidden", "a change sent with the cookie must come from this site (Origin)"
        )
    return await handler(request)


async def login(request: web.Request) -> web.StreamResponse:
    """GET /login?token=...: check the token, set it as an HttpOnly cookie, go to the page;
    the browser session's cookie too (`&session=ID` takes another device's session)."""
    token = request.query.get("token", "")
    if not request.app[TOKEN_CHECK].accepts(token):
        return error_response(401, "unauthorized", "that token is not valid")
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=30 * 86400,
    )
    await attach_session(request, response)
    raise response
