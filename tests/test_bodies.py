"""read_json's decode: one code for a malformed body, one for a bad field, naming it."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from web.bodies import decode_body
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
