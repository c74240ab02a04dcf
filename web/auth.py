"""The API token check on every route but `/healthz`, `/webhooks/*` and `/login`.

A token comes as `Authorization: Bearer <token>`, as the `biagent_token` cookie that
`/login?token=` sets, or (for `/ws` only, where browsers cannot set headers) as `?token=`. A
cookie-authenticated WebSocket or write (the pipeline page's forms post with fetch()) must also
come from our own origin: SameSite=Strict keeps the cookie from other sites, not from another
port of the same host (cross-site WebSocket hijacking, cross-origin form posts).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from web.errors import Handler, error_response
from web.keys import TOKEN_CHECK

COOKIE = "biagent_token"
OPEN_PATHS = frozenset({"/healthz", "/login"})
OPEN_PREFIXES = ("/webhooks/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    return urlsplit(origin).netloc == request.host


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
    if source == "cookie" and not _same_origin(request):
        if request.path == "/ws":
            return error_response(403, "forbidden", "cross-origin WebSocket with a cookie refused")
        if request.method not in SAFE_METHODS:
            return error_response(403, "forbidden", "cross-origin request with a cookie refused")
    return await handler(request)


async def login(request: web.Request) -> web.StreamResponse:
    """GET /login?token=...: check the token, set it as an HttpOnly cookie, go to the page."""
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
    raise response
