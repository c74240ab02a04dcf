"""A webhook's body before it is trusted: the step ahead of "verify" in docs/design.md's data flow
of a webhook, shared by POST /webhooks/github and POST /webhooks/jira.

A webhook is anonymous until its signature matches, so what it may cost until then is bounded:

- Refused before a byte of the body is read: 503 when no secret is configured, 401 without a
  `sha256=` signature header, 413 when the declared length is over GitHub's 25 MB cap, 503 with
  Retry-After when the shared budget cannot hold the declared length. `Expect: 100-continue` is
  answered only once these pass (`SignedRoute.expect`, the routes' expect handler), so a refused
  client never sends its body.
- Then read as a stream, under a deadline (WEBHOOK_BODY_TIMEOUT, 408): the HMAC is updated chunk
  by chunk, the body (inflated, when gzip or deflate) is capped at 25 MB (413), and every byte
  held counts against one `ReadBudget` shared by all requests not yet authenticated
  (WEBHOOK_READ_BUDGET_MB; 503 with Retry-After beyond it). The budget is given back once the
  signature is checked: a verified delivery is no longer anonymous.

aiohttp inflates a compressed body as it is read, at most a reader's buffer at a time (its
DeflateBuffer follows the stream's flow control), so a gzip bomb costs what is read of it and the
cap stops the reading; inflating it ourselves with zlib would repeat that. A refusal that leaves
body bytes unread (mid-read, a compressed body, or after `Expect`) answers with
`Connection: close` and closes the connection: aiohttp would otherwise read the rest to discard
it, inflating a bomb to do so, and a broken body would fail that read with a traceback. A refused
plain body is left to aiohttp's lingering read (10 s at most), so a client that sends it anyway
still gets its answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import ContentEncodingError

from bot.config import Secret
from web.errors import answer_and_close, error_response
from web.keys import READ_BUDGET, SETTINGS

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_BODY_BYTES = 25 * MIB  # GitHub's cap on a webhook payload
RETRY_AFTER_SECONDS = 1


class ReadBudget:
    """Bytes held at once by requests whose signature is not yet checked, across every route."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    def has_room(self, size: int) -> bool:
        return self.held + size <= self.capacity

    def take(self, size: int) -> bool:
        if not self.has_room(size):
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


class _Share:
    """One request's part of the budget: grown as its body arrives, given back in one go."""

    def __init__(self, budget: ReadBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> bool:
        if size > self.size:
            if not self.budget.take(size - self.size):
                return False
            self.size = size
        return True

    def give_back(self) -> None:
        self.budget.give_back(self.size)
        self.size = 0


class Refusal(Exception):
    """A webhook refused before its body was verified; `answer` tells the client."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        close: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close
        self.retry_after = retry_after

    async def answer(self, request: web.Request) -> web.Response:
        response = error_response(self.status, self.code, self.message)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        if self.close and not request.content.is_eof():
            await answer_and_close(request, response)
        return response


def _busy(*, close: bool = True) -> Refusal:
    message = "too many webhook bodies are being read at once; retry shortly"
    return Refusal(503, "busy", message, close=close, retry_after=RETRY_AFTER_SECONDS)


def _compressed(request: web.Request) -> bool:
    return request.headers.get("Content-Encoding", "identity").strip().lower() != "identity"


def _digest_matches(mac: hmac.HMAC, header: str) -> bool:
    """`sha256=<hex>` against the HMAC, compared in constant time (bytes: a non-ASCII header is
    just wrong, not an error)."""
    presented = header[7:].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(mac.hexdigest().encode(), presented)


@dataclass(frozen=True, slots=True)
class SignedRoute:
    """A webhook route signed with `sha256=<hex>` in `header`, by the secret `secret_of` reads
    from the application for each request (`secret_variable` names it when it is not set): the
    GitHub App's may arrive while the server runs (web/setup_github.py)."""

    header: str
    secret_variable: str
    secret_of: Callable[[web.Application], Secret | None]

    def refusal_before_reading(self, request: web.Request, *, close: bool) -> Refusal | None:
        """What refuses this request on its headers alone, if anything."""
        if self.secret_of(request.app) is None:
            message = f"{self.secret_variable} is not set: these webhooks are refused"
            return Refusal(503, "webhooks_disabled", message, close=close)
        if not request.headers.get(self.header, "").startswith("sha256="):
            message = f"{self.header} is missing or does not match"
            return Refusal(401, "bad_signature", message, close=close)
        declared = request.content_length or 0
        if declared > MAX_BODY_BYTES:
            message = f"the body is {declared} bytes; webhooks are at most {MAX_BODY_BYTES}"
            return Refusal(413, "too_large", message, close=close)
        if not request.app[READ_BUDGET].has_room(declared):
            return _busy(close=close)
        return None

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """The route's `Expect` handler: `100 Continue` only for a request the headers admit."""
        refusal = self.refusal_before_reading(request, close=True)
        if refusal is not None:
            return await refusal.answer(request)
        if request.version != HttpVersion11:
            return None
        if request.headers.get("Expect", "").lower() != "100-continue":
            return error_response(417, "expectation_failed", "only 100-continue is understood")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the response's body
        return None

    async def read(self, request: web.Request) -> bytes:
        """The body, once its signature matches; `Refusal` otherwise."""
        refusal = self.refusal_before_reading(request, close=_compressed(request))
        if refusal is not None:
            raise refusal
        secret = self.secret_of(request.app)
        assert secret is not None  # refusal_before_reading answered 503 otherwise
        mac = hmac.new(secret.reveal().encode("utf-8"), digestmod=hashlib.sha256)
        share = _Share(request.app[READ_BUDGET])
        try:
            if not share.grow_to(request.content_length or 0):
                raise _busy()
            chunks = await _read_chunks(request, share, mac)
        finally:
            share.give_back()
        if not _digest_matches(mac, request.headers[self.header]):
            raise Refusal(401, "bad_signature", f"{self.header} is missing or does not match")
        return b"".join(chunks)


async def _read_chunks(request: web.Request, share: _Share, mac: hmac.HMAC) -> list[bytes]:
    """The body as it arrives, each chunk counted, capped and added to the HMAC."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(request.app[SETTINGS].webhook_body_timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    message = f"the body is over {MAX_BODY_BYTES} bytes (inflated)"
                    raise Refusal(413, "too_large", message, close=True)
                if not share.grow_to(size):
                    raise _busy()
                mac.update(chunk)
                chunks.append(chunk)
    except TimeoutError:
        message = "the body did not arrive in time"
        raise Refusal(408, "body_timeout", message, close=True) from None
    except (web.RequestPayloadError, ContentEncodingError) as error:
        message = "the request body cannot be read: " + " ".join(str(error).split())
        raise Refusal(400, "malformed_body", message, close=True) from None
    except ConnectionError:
        log.info("%s %s: the client went away mid-body", request.method, request.path)
        raise Refusal(400, "client_gone", "the connection closed mid-body", close=True) from None
    return chunks
