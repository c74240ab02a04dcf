"""One error shape for every route: `{"error": {"code": ..., "message": ...}}`.

Handlers raise `ApiError` (or aiohttp's HTTP exceptions); the middleware turns them, and any
unexpected exception, into that shape. An unexpected error is logged with its traceback and
answered 500 without details. A body that cannot be read as sent (bad gzip, a broken chunked
stream) is answered 400.

Whatever the answer, when the body cannot be read to its end (it failed already) or is
compressed and was left unread, the answer says `Connection: close` and the connection is
closed once it is sent. aiohttp would otherwise read the rest to discard it: inflating what
nobody reads, failing where the body is broken, logging that as an unhandled exception and
dropping a kept-alive connection under a client that was told nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}`, with `extra` top-level fields a
    client acts on (for example where to resume from)."""

    def __init__(
        self, status: int, code: str, message: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def error_response(
    status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}, **(extra or {})}
    return web.json_response(body, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    if _body_left_unreadable(request) and not isinstance(response, web.WebSocketResponse):
        await answer_and_close(request, response)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message, error.extra)
    except (web.RequestPayloadError, ContentEncodingError) as error:
        message = f"the request body cannot be read: {error}"
        return error_response(400, "malformed_body", message)
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        code = error.reason.lower().replace(" ", "_")
        return error_response(error.status, code, error.text or error.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the server log")


def _body_left_unreadable(request: web.Request) -> bool:
    """Whether reading the rest of the body to discard it would fail (it did already) or
    inflate what nobody reads (a compressed body the route did not read to its end)."""
    if not request.body_exists:
        return False
    if request.content.exception() is not None:
        return True
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    return encoding not in ("", "identity") and not request.content.is_eof()


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send `response` now (if it is not sent yet) and close the connection after it."""
    response.force_close()
    transport = request.transport
    if transport is not None and not transport.is_closing():
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write_eof()
    request.protocol.force_close()


# SQLite's INTEGER: a larger number is an OverflowError at the insert or the lookup.
DB_INT_MAX = 2**63 - 1

# ASCII digits only (int() also takes "١٢", " 12" and "1_2"), and at most 19 of them: every
# SQLite integer fits, and int() never sees the 4,300 digits at which it raises.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


def whole_number(text: str) -> int | None:
    """`text` as a whole number (0 to 10**19 - 1), or None: the one parser of the numbers a
    client writes in a path, a query string or a WebSocket subscribe."""
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def path_int(request: web.Request, name: str, what: str) -> int:
    """A numeric id from the path, as the database keeps them (1 to 2**63 - 1), or 400."""
    value = whole_number(request.match_info[name])
    if value is None or not 0 < value <= DB_INT_MAX:
        raise ApiError(400, "bad_parameter", f"{what} must be a positive whole number")
    return value


def query_int(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw)
    if value is None:
        raise ApiError(400, "bad_parameter", f"{name} must be a whole number")
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be between {low} and {high}")
    return value
