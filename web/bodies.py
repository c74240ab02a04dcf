"""Request bodies: one typed decode for every route that takes JSON (docs/design.md, Layers).

A route declares its body as a msgspec Struct and calls `read_json(request, Model)`. The decode
is strict (no coercion: `"1"` is not a number, `true` is not 1) and depth-limited (msgspec stops
at the interpreter's recursion limit: a deeply nested body is refused, not followed). Two
failures, both 400 through web/errors.py's one error shape: a body that is not a JSON object of
that shape at all (`malformed_body`), and one field that is wrong (`invalid_field`, naming it).
Routes older than this helper keep the codes their clients already know, by passing them in.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from web.errors import ApiError

BodyT = TypeVar("BodyT", bound=msgspec.Struct)

MALFORMED_BODY = "malformed_body"
INVALID_FIELD = "invalid_field"

_FIELD_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def field_of(error: msgspec.ValidationError) -> str | None:
    """The field a validation error is about (`repositories[2]`), None for the whole body."""
    text = str(error)
    at = _FIELD_PATH.search(text)
    path = at.group("path") if at else ""
    missing = _MISSING_FIELD.match(text)
    if missing:
        return f"{path}.{missing.group('name')}" if path else missing.group("name")
    return path or None


@functools.cache
def _decoder(model: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(model, strict=True)


def decode_body(
    raw: bytes,
    model: type[BodyT],
    *,
    malformed: str = MALFORMED_BODY,
    invalid: str = INVALID_FIELD,
    empty_is: bytes | None = None,
) -> BodyT:
    """`raw` as a `model`; an empty body stands for `empty_is` when given (an optional body)."""
    if not raw.strip() and empty_is is not None:
        raw = empty_is
    try:
        decoded: BodyT = _decoder(model).decode(raw)
        return decoded
    except msgspec.ValidationError as error:
        field = field_of(error)
        if field is None:
            raise ApiError(400, malformed, f"the body must be a JSON object: {error}") from None
        message = str(error).split(" - at ", 1)[0]
        raise ApiError(400, invalid, f"{field}: {message}") from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as error:
        raise ApiError(400, malformed, f"the body is not valid JSON: {error}") from None


def decode_body_and_text(raw: bytes, model: type[BodyT]) -> tuple[BodyT, str]:
    """`raw` as a `model` and as text (a webhook keeps its payload). msgspec does not check the
    UTF-8 of fields the model skips, so the text is decoded here too: 400 `malformed_body`."""
    decoded = decode_body(raw, model)
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
