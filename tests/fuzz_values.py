"""Hypothesis strategies for tests/test_fuzz.py: JSON that a hostile client would write (lone
UTF-16 surrogates, integers past SQLite's and int()'s limits, nesting past any sane depth, the
wrong type in every place), the real payloads of tests/fixtures with fields mutated into it, and
header and path text that a client can still put on the wire.

A JSON value here is Python data plus two markers the encoder writes as they are: `Literal` (a
number no Python int would print, `NaN`, `1e999`) and `Nested` (a value inside hundreds of
brackets, which a recursive encoder could not write).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.helpers import FIXTURES

# Every code point, lone surrogates included (hypothesis leaves them out unless asked).
ANY_CHARACTER = st.one_of(st.characters(), st.characters(categories=["Cs"]))
# What aiohttp's client will put in a header value: no control character, no surrogate.
HEADER_CHARACTER = st.characters(exclude_categories=["Cc", "Cs"])


@dataclass(frozen=True, slots=True)
class Literal:
    """JSON text written as it is."""

    text: str

    def __repr__(self) -> str:  # hypothesis prints it in every report: 5,000 digits are noise
        shown = self.text if len(self.text) <= 20 else f"{self.text[:8]}...({len(self.text)})"
        return f"Literal({shown!r})"


@dataclass(frozen=True, slots=True)
class Nested:
    """`value` inside `depth` arrays (or single-key objects)."""

    depth: int
    value: Any
    objects: bool = False


HUGE_NUMBERS = [
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**40),
    Literal("9" * 4301),
    Literal("-" + "1" * 5000),
    Literal("1e999"),
    Literal("-1e999"),
    Literal("1E-400"),
    Literal("-0"),
    Literal("0.0000000000000000000000001"),
    Literal("NaN"),
    Literal("Infinity"),
    Literal("1" * 30 + "." + "5" * 30),
]


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], *others: st.SearchStrategy[Any]) -> Any:
    """`usual` four times in five, else one of `others`: most examples then get past the first
    check to the deeper ones, and a failing example shrinks towards `usual`. (`one_of` with
    `usual` repeated would not weigh it: hypothesis draws its branches by its own lights.)"""
    if draw(st.sampled_from([True, True, True, True, False])):
        return draw(usual)
    return draw(st.one_of(*others))


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(ANY_CHARACTER, max_size=max_size)


def leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(HUGE_NUMBERS),
        st.floats(),
        texts(),
        st.sampled_from(["", "0", "1", "-1", "*", "AB-1", "octo/repo", "https://[::1", "\x00"]),
    )


def json_values(keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value, hostile leaves anywhere, now and then nested 30 to 3,000 deep."""
    keys = texts(20) if keys is None else st.one_of(keys, texts(20))

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
            st.builds(Nested, st.integers(30, 3000), inner, st.booleans()),
        )

    return st.recursive(leaves(), extend, max_leaves=12)


def encode(value: Any, *, ascii_only: bool = True) -> str:
    """`value` as JSON text. `ascii_only` escapes a lone surrogate (`\\ud800`); without it the
    surrogate stays a character, which `as_bytes` writes as the bytes no UTF-8 decoder takes."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, Nested):
        inner = encode(value.value, ascii_only=ascii_only)
        if value.objects:
            return '{"a":' * value.depth + inner + "}" * value.depth
        return "[" * value.depth + inner + "]" * value.depth
    if isinstance(value, dict):
        members = (
            f"{json.dumps(str(key), ensure_ascii=ascii_only)}:{encode(item, ascii_only=ascii_only)}"
            for key, item in value.items()
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(item, ascii_only=ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def json_bodies(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """A value of `values` as a body: JSON with `\\u` escapes, JSON with raw (CESU-8) surrogates,
    or what follows a truncation or a stray byte."""
    text = encode(draw(values), ascii_only=draw(st.booleans()))
    body = as_bytes(text)
    damage = draw(st.sampled_from(["none"] * 12 + ["truncate", "append", "prefix_bom"]))
    if damage == "truncate":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if damage == "append":
        return body + draw(st.binary(min_size=1, max_size=8))
    if damage == "prefix_bom":
        return b"\xef\xbb\xbf" + body
    return body


@cache
def payloads(*folders: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of every JSON object in `folders` of tests/fixtures; the event name
    is the folder below `folders` (GitHub's layout: `pull_request/opened.payload.json`)."""
    found = []
    for folder in folders:
        root = FIXTURES / folder
        for path in sorted(root.rglob("*.json")):
            payload = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(payload, dict):
                found.append((path.relative_to(root).parts[0], payload))
    return found


def _mutate_once(draw: st.DrawFn, payload: dict[str, Any]) -> None:
    """Walk down from the top to a container, then replace, drop or add one of its members."""
    node: dict[str, Any] | list[Any] = payload
    while True:
        members = list(node) if isinstance(node, dict) else list(range(len(node)))
        containers = [m for m in members if isinstance(node[m], dict | list) and node[m]]  # type: ignore[index]
        if not containers or not draw(st.booleans()):
            break
        node = node[draw(st.sampled_from(containers))]  # type: ignore[index]
    members = list(node) if isinstance(node, dict) else list(range(len(node)))
    how = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
    if how == "add" or not members:
        if isinstance(node, dict):
            node[draw(texts(20))] = draw(json_values())
        else:
            node.append(draw(json_values()))
        return
    member = draw(st.sampled_from(members))
    if how == "drop":
        del node[member]  # type: ignore[arg-type]
    else:
        node[member] = draw(json_values())  # type: ignore[index]


@st.composite
def mutated_payloads(draw: st.DrawFn, *folders: str) -> tuple[str, Any]:
    """(event name, a real payload with one to three members replaced, dropped or added), now
    and then a whole payload replaced by any JSON value."""
    event, original = draw(st.sampled_from(payloads(*folders)))
    if draw(st.integers(0, 9)) == 0:
        return event, draw(json_values())
    payload = copy.deepcopy(original)
    for _ in range(draw(st.integers(0, 3))):
        _mutate_once(draw, payload)
    return event, payload


def header_texts(max_size: int = 80) -> st.SearchStrategy[str]:
    return st.text(HEADER_CHARACTER, max_size=max_size)


def path_segments() -> st.SearchStrategy[str]:
    """A path parameter as sent: percent-encoded bytes of any text (a lone surrogate as the
    bytes no UTF-8 decoder takes), or digits past every limit."""
    return st.one_of(
        texts(30).map(lambda text: quote(as_bytes(text), safe="")),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.integers(4000, 6000).map(lambda n: "9" * n),
        st.sampled_from(["0", "1", "-1", "1.5", "%ED%A0%80", "%FF", "%", "..", "%2F", "AB-1"]),
    )
