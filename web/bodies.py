"""The one JSON decoder for what clients send: API bodies, webhook payloads, WebSocket frames
(docs/design.md, Layers: the web edge, before anything reaches bot/ or storage/).

`decode_json(raw, Model)` is the core. It refuses, as `BadJson`, text that is not JSON, not
UTF-8, holds a lone UTF-16 surrogate (`"\\ud800"`: SQLite cannot encode it, so it must not get
past the edge) or nests arrays and objects deeper than `MAX_DEPTH`; a value of the wrong shape
is msgspec's `ValidationError`, naming the field. The decode is strict (no coercion: `"1"` is not
a number, `true` is not 1), and an integer field is declared as `DbInt` or `RowId` (or narrower),
so a number SQLite cannot hold is refused here, not at the insert.

A route calls `read_json(request, Model)`: a body that is not a JSON object of that shape at all
is 400 `malformed_body`, one wrong field is 400 `invalid_field`, through web/errors.py's one error
shape. Routes older than this helper keep the codes their clients already know, by passing them
in. web/ws.py closes the socket instead (1007, or 1008 for the depth limit).
"""

from __future__ import annotations

import functools
import re
from itertools import accumulate
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from web.errors import DB_INT_MAX, ApiError

BodyT = TypeVar("BodyT", bound=msgspec.Struct)

MALFORMED_BODY = "malformed_body"
INVALID_FIELD = "invalid_field"

# Our bodies and frames nest three levels at most; the limit stays far below the recursion
# limit, so nothing deeper is built into Python objects that later code would recurse through.
MAX_DEPTH = 32

DbInt = Annotated[int, msgspec.Meta(ge=-DB_INT_MAX - 1, le=DB_INT_MAX)]
RowId = Annotated[int, msgspec.Meta(ge=1, le=DB_INT_MAX)]

_FIELD_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")
# Escapes in order: a surrogate pair, a surrogate alone, any other escape (`\\` included).
_ESCAPE = re.compile(
    rb"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?P<lone>u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')
_STRING = re.compile(rb'"[^"]*"')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = 1
_DEPTH_STEP[ord("]")] = -1


class BadJson(ValueError):
    """Bytes the decoder refuses as JSON text; the message completes "the body ..."."""


class TooDeep(BadJson):
    """Well-formed JSON nested deeper than the limit: refused by policy."""


def field_of(error: msgspec.ValidationError) -> str | None:
    """The field a validation error is about (`repositories[2]`), None for the whole body."""
    text = str(error)
    at = _FIELD_PATH.search(text)
    path = at.group("path") if at else ""
    missing = _MISSING_FIELD.match(text)
    if missing:
        return f"{path}.{missing.group('name')}" if path else missing.group("name")
    return path or None


def field_problem(error: msgspec.ValidationError) -> str | None:
    """`field: what is wrong with it`, or None when the error is about the whole value."""
    field = field_of(error)
    return None if field is None else f"{field}: {str(error).split(' - at ', 1)[0]}"


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether `raw` nests arrays and objects deeper than `limit` (brackets in strings do not
    count). The passes over the bytes run in C; Python walks only what the brackets leave, about
    a second for the worst 25 MB an API client could craft, microseconds for a real body."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Drop escaped backslashes, then escaped quotes: every quote left opens or closes a string.
    bare = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = _STRING.sub(b"", bare).translate(_ONE_KIND)
    if b"[" * (limit + 1) in brackets:  # the usual attack, found at once
        return True
    # Each pass takes away the innermost level everywhere: most of a wide body, in C.
    inner_two_gone = brackets.replace(b"[]", b"").replace(b"[]", b"")
    return max(accumulate(map(_DEPTH_STEP.__getitem__, inner_two_gone)), default=0) > limit - 2


def _lone_surrogate(raw: bytes) -> int | None:
    """Where `raw` escapes a UTF-16 surrogate outside a pair, or None."""
    for escape in _ESCAPE.finditer(raw):
        if escape.group("lone"):
            return escape.start()
    return None


def _refusal(raw: bytes, error: Exception) -> BadJson:
    at = _lone_surrogate(raw) if isinstance(error, msgspec.DecodeError) else None
    if at is not None:  # msgspec refuses these too, in words ("truncated") that mislead
        return BadJson(f"holds a lone UTF-16 surrogate (byte {at}): it is not text")
    if isinstance(error, RecursionError):
        return TooDeep("nests too deep")
    return BadJson(f"is not valid JSON: {error}")


@functools.cache
def _decoder(model: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(model, strict=True)


def decode_json(raw: bytes, model: type[BodyT], *, max_depth: int | None = MAX_DEPTH) -> BodyT:
    """`raw` as a `model`: BadJson (TooDeep past `max_depth`), or msgspec.ValidationError.
    With `max_depth` None only msgspec's own recursion guard bounds the depth."""
    if max_depth is not None and nests_deeper_than(raw, max_depth):
        raise TooDeep(f"nests deeper than {max_depth} arrays or objects")
    try:
        decoded: BodyT = _decoder(model).decode(raw)
        return decoded
    except msgspec.ValidationError:
        raise
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as error:
        raise _refusal(raw, error) from None


def decode_body(
    raw: bytes,
    model: type[BodyT],
    *,
    malformed: str = MALFORMED_BODY,
    invalid: str = INVALID_FIELD,
    empty_is: bytes | None = None,
    max_depth: int | None = MAX_DEPTH,
) -> BodyT:
    """`raw` as a `model`, or ApiError 400; an empty body stands for `empty_is` when given (an
    optional body)."""
    if not raw.strip() and empty_is is not None:
        raw = empty_is
    try:
        return decode_json(raw, model, max_depth=max_depth)
    except msgspec.ValidationError as error:
        problem = field_problem(error)
        if problem is None:
            raise ApiError(400, malformed, f"the body must be a JSON object: {error}") from None
        raise ApiError(400, invalid, problem) from None
    except BadJson as refused:
        raise ApiError(400, malformed, f"the body {refused}") from None


def decode_body_and_text(raw: bytes, model: type[BodyT]) -> tuple[BodyT, str]:
    """`raw` as a `model` and as text (a webhook keeps its payload). msgspec does not check the
    UTF-8 of fields the model skips, so the text is decoded here too: 400 `malformed_body`.

    A webhook's payload is skipped, not built (only the logged fields are), and a scan for its
    depth would cost more than the decode on the intake's path (bench/webhooks.py): msgspec's
    recursion guard bounds it. Lone surrogates are refused anywhere in the payload, skipped
    fields included, so the stored text never carries one to the dispatcher."""
    decoded = decode_body(raw, model, max_depth=None)
    try:
        return decoded, raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, MALFORMED_BODY, f"the body is not UTF-8: {error}") from None


async def read_json(
    request: web.Request,
    model: type[BodyT],
    *,
    malformed: str = MALFORMED_BODY,
    invalid: str = INVALID_FIELD,
    optional: bool = False,
) -> BodyT:
    """The request's body decoded into `model`, or ApiError 400. With `optional`, no body at
    all reads as `{}` (every field at its default)."""
    raw = await request.read() if request.can_read_body else b""
    return decode_body(
        raw, model, malformed=malformed, invalid=invalid, empty_is=b"{}" if optional else None
    )
