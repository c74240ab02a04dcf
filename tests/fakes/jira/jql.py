"""JQL for the fake Jira: a small real parser of what biagent and its tests send.

Part of the Jira protocol fake (tests/fakes/jira/). AND/OR, parentheses, = != > >= < <= ~ IN,
NOT IN and ORDER BY over the fields Jira would know; an unknown field or a syntax error raises
`JqlError`, which the fake answers 400 in Jira's error shape. A parsed query is a predicate on
`FakeIssue` and a sort order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.fakes.jira.model import ACCOUNT_TZ, FakeIssue


class JqlError(Exception):
    """A query Jira refuses with 400; each argument is one of its `errorMessages`."""


_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|>=|<=|=|>|<|~|\(|\)|,)'
    r"|(?P<word>[A-Za-z0-9_.\-:/]+))"
)
KNOWN_FIELDS = {
    "project",
    "key",
    "issuekey",
    "id",
    "updated",
    "created",
    "status",
    "assignee",
    "issuetype",
    "type",
    "labels",
    "summary",
    "text",
    "priority",
}


def _tokens(jql: str) -> list[tuple[str, str]]:
    found, position = [], 0
    jql = jql.strip()
    while position < len(jql):
        match = _TOKEN.match(jql, position)
        if match is None or match.end() == position:
            raise JqlError(
                f"Error in the JQL Query: The character '{jql[position]}'"
                " is a reserved JQL character."
            )
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1]
        found.append((kind, value))
    return found


class Parser:
    """One query, parsed by recursive descent: OR of ANDs of comparisons, then ORDER BY."""

    def __init__(self, jql: str) -> None:
        self.tokens = _tokens(jql)
        self.at = 0
        self.named_ids: list[str] = []  # Jira checks that each of these exists

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting more input at the end of the query.")
        self.at += 1
        return token

    def word_is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() in words

    def parse(self) -> tuple[Callable[[FakeIssue], bool], list[tuple[str, bool]]]:
        predicate: Callable[[FakeIssue], bool] = lambda issue: True  # noqa: E731
        if self.peek() is not None and not self.word_is("order"):
            predicate = self.expression()
        order: list[tuple[str, bool]] = []
        if self.word_is("order"):
            self.take()
            if not self.word_is("by"):
                raise JqlError("Error in the JQL Query: Expecting 'by' after 'order'.")
            self.take()
            while True:
                name = self.take()[1].lower()
                if name not in KNOWN_FIELDS:
                    raise JqlError(f"Not able to sort using field '{name}'.")
                ascending = True
                if self.word_is("asc", "desc"):
                    ascending = self.take()[1].lower() == "asc"
                order.append((name, ascending))
                if self.peek() == ("op", ","):
                    self.take()
                    continue
                break
        left_over = self.peek()
        if left_over is not None:
            raise JqlError(
                f"Error in the JQL Query: Expecting end of query but got '{left_over[1]}'."
            )
        return predicate, order

    def expression(self) -> Callable[[FakeIssue], bool]:
        left = self.term()
        while self.word_is("or"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda issue: a(issue) or b(issue))(left, right)
        return left

    def term(self) -> Callable[[FakeIssue], bool]:
        left = self.factor()
        while self.word_is("and"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda issue: a(issue) and b(issue))(left, right)
        return left

    def factor(self) -> Callable[[FakeIssue], bool]:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.expression()
            if self.take() != ("op", ")"):
                raise JqlError("Error in the JQL Query: Expecting ')'.")
            return inner
        kind, name = self.take()
        if kind != "word" and kind != "string":
            raise JqlError(f"Error in the JQL Query: Expecting a field name but got '{name}'.")
        name = name.lower()
        if name not in KNOWN_FIELDS:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        negate = False
        if self.word_is("not"):
            self.take()
            negate = True
            if not self.word_is("in"):
                raise JqlError("Error in the JQL Query: Expecting 'in' after 'not'.")
        if self.word_is("in"):
            self.take()
            if self.take() != ("op", "("):
                raise JqlError("Error in the JQL Query: Expecting '(' after 'in'.")
            values = []
            while True:
                values.append(self.take()[1])
                separator = self.take()
                if separator == ("op", ")"):
                    break
                if separator != ("op", ","):
                    raise JqlError("Error in the JQL Query: Expecting ',' or ')'.")
            wanted = {_comparable(name, value) for value in values}
            if name == "id":
                self.named_ids.extend(values)
            return lambda issue: (_value(issue, name) in wanted) != negate
        kind, op = self.take()
        if kind != "op" or op not in ("=", "!=", ">", ">=", "<", "<=", "~"):
            raise JqlError(f"Error in the JQL Query: Expecting operator but got '{op}'.")
        raw = self.take()[1]
        if op == "~":
            needle = raw.lower().strip("*")
            return lambda issue: needle in str(_value(issue, name) or "").lower()
        value = _comparable(name, raw)
        if name == "id":
            self.named_ids.append(raw)
        compare = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">": lambda a, b: a is not None and a > b,
            ">=": lambda a, b: a is not None and a >= b,
            "<": lambda a, b: a is not None and a < b,
            "<=": lambda a, b: a is not None and a <= b,
        }[op]
        if name == "labels" and op in ("=", "!="):
            return lambda issue: (value in issue.fields.get("labels", [])) == (op == "=")
        return lambda issue: compare(_value(issue, name), value)


def _key_order(key: str) -> tuple[str, int]:
    project, _, number = key.rpartition("-")
    return project, int(number) if number.isdigit() else 0


def _comparable(name: str, raw: str) -> Any:
    if name in ("updated", "created"):
        if re.fullmatch(r"-?\d{10,}", raw):
            return int(raw)
        for pattern in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
            try:
                # A zone-less JQL date: the account's zone, minute precision.
                parsed = datetime.strptime(raw, pattern).replace(tzinfo=ACCOUNT_TZ)
                return int(parsed.timestamp() * 1000)
            except ValueError:
                continue
        raise JqlError(f"Date value '{raw}' for field '{name}' is invalid.")
    if name == "id":
        if not raw.isdigit():
            raise JqlError(f"The issue id '{raw}' is not valid.")
        return raw
    if name in ("key", "issuekey"):
        return _key_order(raw.upper())
    if name == "project":
        return raw.upper()
    return raw


def _value(issue: FakeIssue, name: str) -> Any:
    fields = issue.fields
    if name == "project":
        return issue.project
    if name in ("key", "issuekey"):
        return _key_order(issue.key)
    if name == "id":
        return issue.id
    if name == "updated":
        return issue.updated_ms
    if name == "created":
        return issue.created_ms
    if name == "status":
        return (fields.get("status") or {}).get("name")
    if name == "assignee":
        return (fields.get("assignee") or {}).get("displayName")
    if name in ("issuetype", "type"):
        return (fields.get("issuetype") or {}).get("name")
    if name == "priority":
        return (fields.get("priority") or {}).get("name")
    if name in ("summary", "text"):
        return str(fields.get("summary", "")) + " " + str(fields.get("description") or "")
    return fields.get(name)


def sort_key(order: list[tuple[str, bool]]) -> Callable[[FakeIssue], Any]:
    """The sort key of an ORDER BY: each field ascending or descending, nulls as empty."""

    def key(issue: FakeIssue) -> Any:
        parts = []
        for name, ascending in order:
            value = _value(issue, name)
            if value is None:
                value = ""
            if isinstance(value, tuple):
                value = value if ascending else (_invert(value[0]), -value[1])
            elif isinstance(value, int):
                value = value if ascending else -value
            elif not ascending:
                value = _invert(str(value))
            parts.append(value)
        return tuple(parts)

    return key


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)
