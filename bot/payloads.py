"""Stored webhook payloads: the dispatcher's one decoder, and the intake's promise that what it
stores can be decoded by it (docs/design.md, Data flow of a webhook).

The webhook endpoints decode only a delivery's envelope (msgspec skips the rest unread, in C,
which keeps the intake fast); the dispatcher decodes the whole stored text later with
`decode_payload`. Of what msgspec's skipping accepts as JSON (and the endpoints as UTF-8), the
dispatcher's decoder refuses one thing: an integer literal longer than the interpreter's limit
on int conversion (`sys.get_int_max_str_digits()`, 4,300 digits by default), which msgspec
skips without converting. Both stop at the interpreter's recursion limit for nesting, and the
dispatcher decodes from a shallower stack than a request handler's. So `check_decodable` looks
for such a run of digits, cheaply, and only a payload that holds one is decoded again to tell
(a string of digits that long is fine): the limit is the same at both ends by construction.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_DIGITS = frozenset(b"0123456789")


class UndecodablePayload(ValueError):
    """A payload the dispatcher's decoder refuses: it can never be worked."""


def decode_payload(text: str) -> dict[str, Any]:
    """The stored payload as the handlers get it; UndecodablePayload when it is not a JSON object
    this decoder can build."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise UndecodablePayload(f"the payload is not valid JSON: {error}") from None
    except ValueError:  # json.loads' only other ValueError: int() refused a literal's length
        limit = sys.get_int_max_str_digits()
        raise UndecodablePayload(
            f"the payload holds an integer literal of more than {limit} digits, which the"
            " dispatcher's decoder refuses"
        ) from None
    except RecursionError:
        raise UndecodablePayload("the payload is nested too deeply to decode") from None
    if not isinstance(payload, dict):
        raise UndecodablePayload("the payload is not a JSON object")
    return payload


def may_hold_digit_run(raw: bytes, length: int) -> bool:
    """Whether `raw` may hold `length` ASCII digits in a row (False is certain), without reading
    every byte. A run that long covers two bytes `step` apart at multiples of `step` when
    `2 * step <= length`, so only where two such samples are both digits is the stretch between
    them read; a stretch of digits that is not part of a run that long is a rare false alarm."""
    step = length // 2
    if step < 1:
        return any(byte in _DIGITS for byte in raw)
    samples = raw[::step]
    for index in range(len(samples) - 1):
        if samples[index] in _DIGITS and samples[index + 1] in _DIGITS:
            start = index * step
            if raw[start : start + step + 1].isdigit():
                return True
    return False


def check_decodable(raw: bytes) -> None:
    """UndecodablePayload when the dispatcher could not decode `raw`, a body the intake has
    already found to be one well-formed JSON object in UTF-8."""
    limit = sys.get_int_max_str_digits()
    if limit and may_hold_digit_run(raw, limit + 1):
        decode_payload(raw.decode("utf-8"))
