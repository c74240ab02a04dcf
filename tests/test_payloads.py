"""What the intake stores, the dispatcher can decode: the cheap digit-run look never misses a
run, and the check agrees with the dispatcher's decoder on payloads around the int limit."""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.payloads import UndecodablePayload, check_decodable, decode_payload, may_hold_digit_run


@given(
    st.binary(max_size=200).map(lambda raw: raw.translate(bytes.maketrans(b"\x00\x01", b"12"))),
    st.integers(min_value=1, max_value=40),
)
def test_the_digit_run_look_never_misses_a_run(raw: bytes, length: int) -> None:
    if re.search(rb"[0-9]{%d}" % length, raw):
        assert may_hold_digit_run(raw, length)


LIMIT = sys.get_int_max_str_digits()
LENGTHS = st.sampled_from([1, LIMIT - 1, LIMIT, LIMIT + 1, 2 * LIMIT + 3])


@given(
    st.lists(st.tuples(LENGTHS, st.sampled_from(["int", "float", "string"])), max_size=4),
    st.integers(min_value=0, max_value=3000),
)
def test_the_check_refuses_exactly_what_the_dispatcher_cannot_decode(
    numbers: list[tuple[int, str]], padding: int
) -> None:
    members = [f'"pad": "{"x" * padding}"']  # moves the literals against the sampled bytes
    for n, (length, kind) in enumerate(numbers):
        digits = "9" * length
        literal = {"int": digits, "float": f"{digits}.5", "string": f'"{digits}"'}[kind]
        members.append(f'"v{n}": {literal}')
    raw = ("{" + ", ".join(members) + "}").encode()
    try:
        decode_payload(raw.decode())
    except UndecodablePayload:
        with pytest.raises(UndecodablePayload):
            check_decodable(raw)
    else:
        check_decodable(raw)
