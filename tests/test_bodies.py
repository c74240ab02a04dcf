"""The one JSON decoder (web/bodies.py): one code for a malformed body, one for a bad field,
naming it; a depth limit, lone surrogates refused; whole numbers as the one parser reads them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from web.bodies import BadJson, TooDeep, decode_body, decode_json, nests_deeper_than
from web.errors import ApiError, whole_number


class Registration(msgspec.Struct):
    full_name: str
    quota_bytes: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tickets: list[str] = []


def refusal(raw: bytes, **options: str) -> tuple[str, str]:
    with pytest.raises(ApiError) as caught:
        decode_body(raw, Registration, **options)
    assert caught.value.status == 400
    return caught.value.code, caught.value.message


def test_a_well_formed_body_decodes_into_its_struct() -> None:
    body = decode_body(b'{"full_name": "octo/repo", "tickets": ["PROJ-1"]}', Registration)
    assert body == Registration(full_name="octo/repo", tickets=["PROJ-1"])


def test_text_that_is_not_json_is_a_malformed_body() -> None:
    assert refusal(b"{not json")[0] == "malformed_body"


def test_json_that_is_not_an_object_is_a_malformed_body() -> None:
    assert refusal(b"[1, 2]")[0] == "malformed_body"


def test_a_deeply_nested_body_is_refused_as_malformed() -> None:
    deep = b'{"full_name": "a/b", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert refusal(deep)[0] == "malformed_body"


def test_a_field_of_the_wrong_type_is_named() -> None:
    code, message = refusal(b'{"full_name": "a/b", "tickets": ["PROJ-1", 2]}')
    assert code == "invalid_field"
    assert message.startswith("tickets[1]: Expected `str`")


def test_a_missing_field_is_named() -> None:
    assert refusal(b'{"tickets": []}') == (
        "invalid_field",
        "full_name: Object missing required field `full_name`",
    )


def test_the_decode_is_strict() -> None:
    assert refusal(b'{"full_name": "a/b", "quota_bytes": "5"}')[0] == "invalid_field"
    assert refusal(b'{"full_name": "a/b", "quota_bytes": true}')[0] == "invalid_field"


def test_a_route_may_keep_the_codes_its_clients_know() -> None:
    options = {"malformed": "bad_json", "invalid": "bad_parameter"}
    assert refusal(b"nope", **options)[0] == "bad_json"
    assert refusal(b'{"full_name": 1}', **options)[0] == "bad_parameter"


def test_an_optional_body_may_be_empty() -> None:
    class Options(msgspec.Struct):
        full: bool = False

    assert decode_body(b"", Options, empty_is=b"{}") == Options()
    with pytest.raises(ApiError):
        decode_body(b"", Options)


class Loose(msgspec.Struct):
    x: Any = None


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def test_the_depth_limit_counts_arrays_and_objects_not_brackets_in_strings() -> None:
    assert not nests_deeper_than(nested(32), 32)
    assert nests_deeper_than(nested(33), 32)
    assert nests_deeper_than(b'{"a": ' * 33 + b"1" + b"}" * 33, 32)
    in_strings = b'["' + b"[" * 100 + b'", "\\"[[[[", "\\\\", "{{{{{{"]'
    assert not nests_deeper_than(in_strings * 10, 2)
    escaped_then_real = b'["\\\\"' + b", [" * 40 + b"]" * 40 + b"]"
    assert nests_deeper_than(escaped_then_real, 32)


def test_a_wide_body_is_measured_by_its_deepest_branch() -> None:
    assert not nests_deeper_than(b"[" + b"[]," * 1000 + b"1]", 32)
    assert not nests_deeper_than(b"[" + (nested(31) + b",") * 100 + b"1]", 32)
    assert nests_deeper_than(b"[" + (nested(31) + b",") * 100 + nested(32) + b"]", 32)
    assert nests_deeper_than(b'{"a": [' * 17 + b"1" + b"]}" * 17, 32)  # 34 levels
    assert not nests_deeper_than(b'{"a": [' * 16 + b"1" + b"]}" * 16, 32)


def test_a_body_nested_past_the_limit_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(TooDeep):
        decode_json(b'{"full_name": "a/b", "x": ' + nested(40) + b"}", Registration)
    loose = decode_json(b'{"x": ' + nested(40) + b"}", Loose, max_depth=None)
    assert loose.x  # without a limit only msgspec's recursion guard bounds it


@pytest.mark.parametrize(
    "escape",
    [b"\\ud800", b"\\uDBFF", b"\\udc00", b"\\ud800\\u0041", b"\\udfff\\ud800", b"x\\ud800"],
)
def test_a_lone_surrogate_is_refused_and_said_so(escape: bytes) -> None:
    with pytest.raises(BadJson, match="lone UTF-16 surrogate"):
        decode_json(b'{"full_name": "a/b", "skipped": {"k": ["' + escape + b'"]}}', Registration)


def test_a_surrogate_pair_and_an_escaped_backslash_are_text() -> None:
    raw = b'{"full_name": "\\ud83d\\ude00 \\\\ud800"}'
    assert decode_json(raw, Registration).full_name == "\U0001f600 \\ud800"


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("42", 42), ("9" * 19, 10**19 - 1), ("9" * 20, None), ("9" * 5000, None)]
    + [
        (odd, None) for odd in ("", "-1", "+1", " 1", "1 ", "1_0", "1.0", "\u0661", "\uff11", "1\n")
    ],
)
def test_whole_numbers_are_ascii_digits_and_at_most_19_of_them(
    text: str, number: int | None
) -> None:
    assert whole_number(text) == number
