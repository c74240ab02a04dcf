"""What a trusted reverse proxy says about the request: the scheme and host the browser used.

Behind a TLS-terminating proxy the server sees plain http from the proxy's address; the proxy
says `X-Forwarded-Proto: https` (or `Forwarded: proto=https`). Those headers are believed only
from the addresses in `BIAGENT_TRUSTED_PROXIES` (none by default): anyone else could send them.
The middleware hands the handlers a clone of the request with the forwarded scheme and host,
so `request.secure` (the login cookie's `Secure`, web/auth.py) and `request.host` (the Origin
check against cross-site requests) mean what the browser saw. It runs before the token check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web

from web.errors import Handler
from web.keys import SETTINGS

Network = IPv4Network | IPv6Network

_SCHEMES = frozenset({"http", "https"})
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")


def is_trusted(remote: str | None, proxies: Iterable[Network]) -> bool:
    if not remote:
        return False
    try:
        address = ip_address(remote.split("%", 1)[0])
    except ValueError:  # a Unix socket peer, say: not an address a setting can name
        return False
    return any(address in network for network in proxies)


def _nearest(value: str | None) -> str | None:
    """The value the nearest proxy gave: the last of a comma-separated list."""
    if not value:
        return None
    return value.rsplit(",", 1)[-1].strip() or None


def forwarded_origin(
    headers: Mapping[str, str], forwarded: tuple[Mapping[str, str], ...]
) -> tuple[str | None, str | None]:
    """(scheme, host) as the nearest proxy reported them, each None when not said or not
    well-formed; `Forwarded` (RFC 7239, aiohttp's parsed `request.forwarded`) wins over the
    X-Forwarded-* headers."""
    nearest = forwarded[-1] if forwarded else {}
    scheme = nearest.get("proto") or _nearest(headers.get("X-Forwarded-Proto"))
    host = nearest.get("host") or _nearest(headers.get("X-Forwarded-Host"))
    scheme = scheme.lower() if scheme and scheme.lower() in _SCHEMES else None
    host = host if host and _HOST.match(host) else None
    return scheme, host


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    proxies = request.app[SETTINGS].trusted_proxies
    if not proxies or not is_trusted(request.remote, proxies):
        return await handler(request)
    scheme, host = forwarded_origin(request.headers, request.forwarded)
    if scheme is None and host is None:
        return await handler(request)
    return await handler(request.clone(scheme=scheme or request.scheme, host=host or request.host))
