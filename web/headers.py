"""Browser hardening headers on every response the app sends (web/app.py wires the signal).

Set on `on_response_prepare`, not per page, so every HTML page (the status page, the pipeline
pages, the login hint, an error page) gets them whichever module renders it, and a static file
or a JSON answer gets them too at no cost. The Content-Security-Policy allows scripts and
styles from our own origin only: the templates carry no inline script, style or `style=`
attribute (web/static/ holds them). `connect-src 'self'` covers the page's WebSocket (same
host, ws: or wss:). A response that sets one of these headers itself keeps its own.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
