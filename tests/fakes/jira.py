"""A protocol fake of the Jira REST API (v2 and v3) on loopback, for the real `jira` library.

It speaks what biagent uses: serverInfo (deploymentType Server or Cloud), myself, project,
field, JQL search (Server: `GET /search` with startAt/maxResults/total; Cloud: `GET|POST
/search/jql` with nextPageToken/isLast, `POST /search/approximate-count`, and the old `/search`
answered 410 Gone as Cloud does since 2025), an issue with fields, changelog, issuelinks (both
ways, from one link table), attachments and comments, Cloud's changelog paging, transitions,
comments, field updates, attachment metadata and content (streamed, any size, never built in
memory), and 429 with Retry-After on demand. Credentials are checked (Basic email:token, or a
Bearer token), every request is recorded. JQL is a small real parser: AND/OR, parentheses,
= != > >= < <= ~ IN, NOT IN, ORDER BY; an unknown field or a syntax error is a 400 with Jira's
error shape, and so is an `id` naming an issue that does not exist (always on Cloud; on Server
unless validateQuery=false, which makes it a warning). Attachment content is gzipped when the
client accepts it, as behind a compressing proxy. Issues are built in the shapes of the recorded
payloads in tests/fixtures/jira.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

ACCOUNT_TZ = timezone(timedelta(hours=3))  # the account's zone, as Jira renders times
BASE_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def jira_time(ms: int) -> str:
    instant = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ACCOUNT_TZ)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + instant.strftime("%z")


@dataclass
class FakeAttachment:
    id: str
    issue_id: str
    filename: str
    mime_type: str
    size: int
    content: bytes | None = None  # None: a repeating pattern of `size` bytes

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        if self.content is not None:
            yield self.content
            return
        pattern = (b"biagent-attachment-" * (chunk_size // 19 + 1))[:chunk_size]
        left = self.size
        while left > 0:
            piece = pattern[: min(left, chunk_size)]
            left -= len(piece)
            yield piece


@dataclass
class FakeLink:
    id: str
    type_name: str
    inward: str
    outward: str
    outward_issue: str  # id of the issue the link points out to (B in "A blocks B")
    inward_issue: str  # id of the issue it points in from (A)


LINK_TYPES = {
    "Blocks": ("is blocked by", "blocks"),
    "Relates": ("relates to", "relates to"),
    "Duplicate": ("is duplicated by", "duplicates"),
}

STATUSES = {
    "To Do": ("1", "new", "To Do"),
    "In Progress": ("3", "indeterminate", "In Progress"),
    "Done": ("10001", "done", "Done"),
}
TRANSITIONS = [
    ("11", "Start work", "In Progress"),
    ("21", "Finish", "Done"),
    ("31", "Reopen", "To Do"),
]


@dataclass
class FakeIssue:
    id: str
    key: str
    project: str
    fields: dict[str, Any]
    updated_ms: int
    created_ms: int
    histories: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    # Rendered as the `updated` field instead of `updated_ms` when set: a recorded payload's
    # own value (Cloud's examples carry `"updated": 1`) or one no client could read.
    rendered_updated: Any = None


class JqlError(Exception):
    """A query Jira refuses with 400; each argument is one of its `errorMessages`."""


# -- JQL ---------------------------------------------------------------------------------------

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


class _Parser:
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
        if self.peek() is not None:
            raise JqlError(
                f"Error in the JQL Query: Expecting end of query but got '{self.peek()[1]}'."
            )  # type: ignore[index]
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


def _sort_key(order: list[tuple[str, bool]]) -> Callable[[FakeIssue], Any]:
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


# -- ADF ---------------------------------------------------------------------------------------


def to_adf(text: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if text is None or isinstance(text, dict):  # a recorded payload's ADF stays as it is
        return text
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}]}
            for line in text.split("\n")
            if line
        ],
    }


# -- the fake ----------------------------------------------------------------------------------


@dataclass
class _Index:
    links: defaultdict[str, list[FakeLink]]
    attachments: defaultdict[str, list[FakeAttachment]]
    children: defaultdict[str, list[FakeIssue]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)


class FakeJira:
    def __init__(
        self,
        *,
        deployment: str = "Server",
        email: str = "bot@example.com",
        token: str = "jira-api-token",
        search_changelog_limit: int | None = None,
    ) -> None:
        self.deployment = deployment
        # Cloud sites (and proxies in front of them) where POST /search/approximate-count is
        # missing answer 404; switch it off to be one.
        self.approximate_count_enabled = True
        # Jira's configured base URL, used in every `self` and attachment `content` URL; None
        # is the address the request came to. Behind a proxy or under an alias they differ.
        self.base_url: str | None = None
        self.email = email
        self.token = token
        # Cloud returns at most this many histories of an issue inside a search (or an issue GET).
        self.search_changelog_limit = (
            search_changelog_limit
            if search_changelog_limit is not None
            else (40 if deployment == "Cloud" else 0)
        )
        self.issues: dict[str, FakeIssue] = {}
        self.by_key: dict[str, str] = {}
        self.links: dict[str, FakeLink] = {}
        self.attachments: dict[str, FakeAttachment] = {}
        self.projects: dict[str, str] = {}
        self.requests: list[Recorded] = []
        self.throttle_queue: list[float] = []
        self.now_ms = BASE_MS
        self._next_id = 10000
        self._numbers: dict[str, int] = {}
        self._history_ids = 20000
        self._query_cache: dict[str, tuple[list[str], tuple[str, ...]]] = {}
        self._version = 0
        self._by_issue: _Index | None = None
        self.server: TestServer | None = None
        self.app = self._build_app()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        self.server = TestServer(self.app, host="127.0.0.1")
        await self.server.start_server()
        return self.url

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    # -- test controls ---------------------------------------------------------------------

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def tick(self, ms: int = 1000) -> int:
        self.now_ms += ms
        return self.now_ms

    def _changed(self) -> None:
        self._version += 1
        self._query_cache.clear()
        self._by_issue = None

    def _index(self) -> _Index:
        """Links, attachments and sub-tasks by issue id, rebuilt after a change."""
        if self._by_issue is None:
            index = _Index(defaultdict(list), defaultdict(list), defaultdict(list))
            for link in self.links.values():
                index.links[link.inward_issue].append(link)
                index.links[link.outward_issue].append(link)
            for attachment in self.attachments.values():
                index.attachments[attachment.issue_id].append(attachment)
            for other in self.issues.values():
                parent_id = (other.fields.get("parent") or {}).get("id")
                if parent_id:
                    index.children[parent_id].append(other)
            self._by_issue = index
        return self._by_issue

    def add_issue(
        self,
        project: str,
        summary: str,
        *,
        status: str = "To Do",
        issue_type: str = "Task",
        description: str | None = None,
        assignee: str | None = None,
        labels: tuple[str, ...] = (),
        priority: str = "Medium",
        updated_ms: int | None = None,
        histories: int = 0,
        parent: str | None = None,
    ) -> str:
        self.projects.setdefault(project, f"Project {project}")
        issue_id = self._id()
        number = self._numbers.get(project, 0) + 1
        key = f"{project}-{number}"
        while key in self.by_key:
            number += 1
            key = f"{project}-{number}"
        stamp = updated_ms if updated_ms is not None else self.tick()
        status_id, category, _ = STATUSES[status]
        fields: dict[str, Any] = {
            "summary": summary,
            "description": description,
            "status": {
                "name": status,
                "id": status_id,
                "statusCategory": {"key": category, "name": status},
            },
            "issuetype": {"name": issue_type, "id": "10001", "subtask": parent is not None},
            "priority": {"name": priority, "id": "3"},
            "assignee": {"displayName": assignee, "name": assignee.lower().replace(" ", ".")}
            if assignee
            else None,
            "reporter": {"displayName": "Mia Krystof", "name": "mia"},
            "resolution": None,
            "labels": list(labels),
            "components": [],
        }
        if parent is not None:
            parent_issue = self.issues[self.by_key[parent]]
            fields["parent"] = {"id": parent_issue.id, "key": parent}
        self._numbers[project] = int(key.rsplit("-", 1)[1])
        issue = FakeIssue(issue_id, key, project, fields, stamp, stamp)
        for number in range(histories):
            issue.histories.append(self._history(number, f"v{number}", f"v{number + 1}", stamp))
        self.issues[issue_id] = issue
        self.by_key[key] = issue_id
        self._changed()
        return key

    def add_issue_payload(
        self, raw: dict[str, Any], *, updated_ms: int | None = None, keep_updated: bool = False
    ) -> str:
        """Serve an issue recorded in a webhook payload or REST fixture (its fields as given).

        `keep_updated` serves the payload's own `updated` value verbatim, whatever its type.
        """
        fields = dict(raw["fields"])
        project = (fields.get("project") or {}).get("key") or raw["key"].rsplit("-", 1)[0]
        self.projects.setdefault(project, (fields.get("project") or {}).get("name", project))
        stamp = updated_ms if updated_ms is not None else self.tick()
        for name in ("issuelinks", "attachment", "comment", "subtasks"):
            fields.pop(name, None)
        issue = FakeIssue(str(raw["id"]), str(raw["key"]), project, fields, stamp, stamp)
        if keep_updated:
            issue.rendered_updated = raw["fields"]["updated"]
        self.issues[issue.id] = issue
        self.by_key[issue.key] = issue.id
        self._changed()
        return issue.key

    def _history(self, number: int, old: str, new: str, stamp: int) -> dict[str, Any]:
        return {
            "id": str(self._next_history_id()),
            "author": {"displayName": "Mia Krystof", "name": "mia"},
            "created": jira_time(stamp),
            "items": [
                {
                    "field": "summary",
                    "fieldtype": "jira",
                    "from": None,
                    "fromString": old,
                    "to": None,
                    "toString": new,
                }
            ],
        }

    def _next_history_id(self) -> int:
        self._history_ids += 1
        return self._history_ids

    def issue(self, key: str) -> FakeIssue:
        return self.issues[self.by_key[key]]

    def update_issue(self, key: str, *, updated_ms: int | None = None, **fields: Any) -> None:
        issue = self.issue(key)
        stamp = updated_ms if updated_ms is not None else self.tick()
        for name, value in fields.items():
            if name == "status":
                status_id, category, _ = STATUSES[value]
                value = {"name": value, "id": status_id, "statusCategory": {"key": category}}
            old = issue.fields.get(name)
            issue.fields[name] = value
            issue.histories.append(
                {
                    "id": str(self._next_history_id()),
                    "author": {"displayName": "Mia Krystof", "name": "mia"},
                    "created": jira_time(stamp),
                    "items": [
                        {
                            "field": name,
                            "fromString": old.get("name") if isinstance(old, dict) else old,
                            "toString": value.get("name") if isinstance(value, dict) else value,
                        }
                    ],
                }
            )
        issue.updated_ms = stamp
        self._changed()

    def delete_issue(self, key: str) -> None:
        issue_id = self.by_key.pop(key)
        del self.issues[issue_id]
        for link_id, link in list(self.links.items()):
            if issue_id in (link.inward_issue, link.outward_issue):
                del self.links[link_id]
        self._changed()

    def link(self, from_key: str, to_key: str, type_name: str = "Blocks") -> str:
        """`from_key` <outward wording> `to_key` ("PROJ-1 blocks PROJ-2"); both issues change."""
        inward, outward = LINK_TYPES[type_name]
        link_id = self._id()
        self.links[link_id] = FakeLink(
            link_id, type_name, inward, outward, self.by_key[to_key], self.by_key[from_key]
        )
        stamp = self.tick()
        for key in (from_key, to_key):
            self.issue(key).updated_ms = stamp
        self._changed()
        return link_id

    def add_attachment(
        self,
        key: str,
        filename: str,
        *,
        mime_type: str = "text/plain",
        content: bytes | None = None,
        size: int | None = None,
    ) -> str:
        attachment_id = self._id()
        issue = self.issue(key)
        self.attachments[attachment_id] = FakeAttachment(
            attachment_id,
            issue.id,
            filename,
            mime_type,
            len(content) if content is not None else (size or 0),
            content,
        )
        issue.updated_ms = self.tick()
        self._changed()
        return attachment_id

    def throttle(self, retry_after: float, times: int = 1) -> None:
        """Answer the next `times` API requests 429 with this Retry-After."""
        self.throttle_queue.extend([retry_after] * times)

    def requests_to(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    # -- rendering -------------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        return self.base_url or f"{request.scheme}://{request.host}"

    def _issue_json(
        self,
        request: web.Request,
        issue: FakeIssue,
        *,
        version: str,
        wanted: set[str] | None,
        expand: set[str],
    ) -> dict[str, Any]:
        base = self._base(request)
        fields: dict[str, Any] = dict(issue.fields)
        fields["project"] = {
            "id": "1" + str(abs(hash(issue.project)) % 10000),
            "key": issue.project,
            "name": self.projects.get(issue.project, issue.project),
            "self": f"{base}/rest/api/{version}/project/{issue.project}",
        }
        fields["updated"] = (
            issue.rendered_updated
            if issue.rendered_updated is not None
            else jira_time(issue.updated_ms)
        )
        fields["created"] = jira_time(issue.created_ms)
        index = self._index()
        fields["issuelinks"] = [
            self._link_json(base, version, link, issue.id) for link in index.links[issue.id]
        ]
        fields["attachment"] = [
            self._attachment_json(base, version, attachment)
            for attachment in index.attachments[issue.id]
        ]
        fields["subtasks"] = [
            {"id": other.id, "key": other.key, "fields": {"summary": other.fields["summary"]}}
            for other in index.children[issue.id]
        ]
        fields["comment"] = {
            "comments": [self._comment_json(base, version, issue, c) for c in issue.comments],
            "maxResults": len(issue.comments),
            "total": len(issue.comments),
            "startAt": 0,
        }
        if version == "3":
            fields["description"] = to_adf(fields.get("description"))
        if wanted is not None and "*all" not in wanted and "*navigable" not in wanted:
            fields = {name: value for name, value in fields.items() if name in wanted}
        rendered: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": issue.id,
            "self": f"{base}/rest/api/{version}/issue/{issue.id}",
            "key": issue.key,
            "fields": fields,
        }
        if "changelog" in expand:
            histories = issue.histories
            limit = self.search_changelog_limit
            shown = histories[:limit] if limit else histories
            rendered["changelog"] = {
                "startAt": 0,
                "maxResults": len(shown),
                "total": len(histories),
                "histories": shown,
            }
        return rendered

    def _link_json(self, base: str, version: str, link: FakeLink, issue_id: str) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "id": link.id,
            "self": f"{base}/rest/api/{version}/issueLink/{link.id}",
            "type": {
                "id": "10000",
                "name": link.type_name,
                "inward": link.inward,
                "outward": link.outward,
            },
        }
        if issue_id == link.inward_issue:
            other, side = self.issues[link.outward_issue], "outwardIssue"
        else:
            other, side = self.issues[link.inward_issue], "inwardIssue"
        rendered[side] = {
            "id": other.id,
            "key": other.key,
            "self": f"{base}/rest/api/{version}/issue/{other.id}",
            "fields": {"summary": other.fields["summary"], "status": other.fields.get("status")},
        }
        return rendered

    def _attachment_json(
        self, base: str, version: str, attachment: FakeAttachment
    ) -> dict[str, Any]:
        content = (
            f"{base}/rest/api/3/attachment/content/{attachment.id}"
            if self.deployment == "Cloud"
            else f"{base}/secure/attachment/{attachment.id}/{attachment.filename}"
        )
        return {
            "self": f"{base}/rest/api/{version}/attachment/{attachment.id}",
            "id": attachment.id,
            "filename": attachment.filename,
            "author": {"displayName": "Mia Krystof", "name": "mia"},
            "created": jira_time(BASE_MS),
            "size": attachment.size,
            "mimeType": attachment.mime_type,
            "content": content,
        }

    def _comment_json(
        self, base: str, version: str, issue: FakeIssue, comment: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "self": f"{base}/rest/api/{version}/issue/{issue.id}/comment/{comment['id']}",
            "id": comment["id"],
            "author": {"displayName": comment["author"], "name": "bot"},
            "body": to_adf(comment["body"]) if version == "3" else comment["body"],
            "created": jira_time(comment["created_ms"]),
            "updated": jira_time(comment["created_ms"]),
        }

    # -- HTTP ------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        api = "/rest/api/{version:2|3|latest}"
        app.router.add_get(f"{api}/serverInfo", self.server_info)
        app.router.add_get(f"{api}/myself", self.myself)
        app.router.add_get(f"{api}/project", self.project_list)
        app.router.add_get(f"{api}/field", self.field_list)
        app.router.add_route("*", f"{api}/search", self.search_classic)
        app.router.add_route("*", f"{api}/search/jql", self.search_jql)
        app.router.add_post(f"{api}/search/approximate-count", self.approximate_count)
        app.router.add_get(f"{api}/issue/{{key}}", self.get_issue)
        app.router.add_put(f"{api}/issue/{{key}}", self.put_issue)
        app.router.add_get(f"{api}/issue/{{key}}/changelog", self.changelog)
        app.router.add_get(f"{api}/issue/{{key}}/transitions", self.get_transitions)
        app.router.add_post(f"{api}/issue/{{key}}/transitions", self.post_transition)
        app.router.add_get(f"{api}/issue/{{key}}/comment", self.get_comments)
        app.router.add_post(f"{api}/issue/{{key}}/comment", self.post_comment)
        app.router.add_get(f"{api}/attachment/{{id:[0-9]+}}", self.attachment_meta)
        app.router.add_get(f"{api}/attachment/content/{{id}}", self.attachment_content)
        app.router.add_get("/secure/attachment/{id}/{filename}", self.attachment_content)
        return app

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except ValueError:
                return False
            return decoded == f"{self.email}:{self.token}"
        if header.startswith("Bearer "):
            return header[7:] == self.token
        return False

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                {k: request.query.getall(k) for k in request.query},
                dict(request.headers),
            )
        )
        if not self._authorized(request):
            return web.json_response(
                {
                    "errorMessages": [
                        "You are not authenticated."
                        " Authentication required to perform this operation."
                    ]
                },
                status=401,
            )
        if self.throttle_queue:
            retry_after = self.throttle_queue.pop(0)
            return web.json_response(
                {"errorMessages": ["Rate limit exceeded."]},
                status=429,
                headers={"Retry-After": f"{retry_after:g}"},
            )
        try:
            return await handler(request)
        except JqlError as error:
            return web.json_response(
                {"errorMessages": [str(message) for message in error.args], "warningMessages": []},
                status=400,
            )

    def _find(self, key: str) -> FakeIssue:
        issue_id = key if key in self.issues else self.by_key.get(key.upper())
        if issue_id is None or issue_id not in self.issues:
            raise web.HTTPNotFound(
                text=json.dumps(
                    {
                        "errorMessages": [
                            "Issue does not exist or you do not have permission to see it."
                        ],
                        "errors": {},
                    }
                ),
                content_type="application/json",
            )
        return self.issues[issue_id]

    async def server_info(self, request: web.Request) -> web.Response:
        info: dict[str, Any] = {
            "baseUrl": self._base(request),
            "version": "9.12.2" if self.deployment == "Server" else "1001.0.0-SNAPSHOT",
            "versionNumbers": [9, 12, 2] if self.deployment == "Server" else [1001, 0, 0],
            "deploymentType": self.deployment,
            "buildNumber": 100000,
            "serverTime": jira_time(self.now_ms),
            "serverTitle": "Fake Jira",
        }
        return web.json_response(info)

    async def myself(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "bot", "displayName": "biagent bot", "emailAddress": self.email}
        )

    async def project_list(self, request: web.Request) -> web.Response:
        base = self._base(request)
        return web.json_response(
            [
                {
                    "id": str(index),
                    "key": key,
                    "name": name,
                    "self": f"{base}/rest/api/2/project/{key}",
                }
                for index, (key, name) in enumerate(sorted(self.projects.items()), start=10000)
            ]
        )

    async def field_list(self, request: web.Request) -> web.Response:
        names = [
            "summary", "description", "status", "issuetype", "priority", "assignee", "reporter",
            "resolution", "project", "labels", "components", "created", "updated", "issuelinks",
            "attachment", "parent", "subtasks", "comment",
        ]  # fmt: skip
        return web.json_response(
            [
                {"id": name, "name": name.title(), "custom": False, "clauseNames": [name]}
                for name in names
            ]
        )

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {key: request.query.getall(key) for key in request.query}
        if request.method == "POST" and request.can_read_body:
            body = await request.json()
            params.update(
                {key: value if isinstance(value, list) else [value] for key, value in body.items()}
            )
        return params

    def _matching(
        self, jql: str, *, validate: bool = True, warnings: list[str] | None = None
    ) -> list[FakeIssue]:
        """The issues `jql` finds, in its order.

        Like Jira, an `id = N` or `id in (...)` naming an issue that does not exist is a 400
        when the query is validated (always on Cloud; on Server unless validateQuery=false),
        otherwise a warning.
        """
        cached = self._query_cache.get(jql)
        if cached is None:
            parser = _Parser(jql)
            predicate, order = parser.parse()
            found = [issue for issue in self.issues.values() if predicate(issue)]
            found.sort(key=_sort_key(order or [("key", False)]))
            cached = ([issue.id for issue in found], tuple(parser.named_ids))
            self._query_cache[jql] = cached
        ids, named_ids = cached
        unknown = [
            f"An issue with key '{issue_id}' does not exist for field 'id'."
            for issue_id in dict.fromkeys(named_ids)
            if issue_id not in self.issues
        ]
        if unknown and validate:
            raise JqlError(*unknown)
        if warnings is not None:
            warnings.extend(unknown)
        return [self.issues[issue_id] for issue_id in ids]

    @staticmethod
    def _fields_wanted(params: dict[str, Any]) -> set[str] | None:
        raw = params.get("fields")
        if not raw:
            return None
        wanted: set[str] = set()
        for entry in raw:
            wanted.update(part.strip() for part in str(entry).split(",") if part.strip())
        return wanted

    @staticmethod
    def _expand(params: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        for entry in params.get("expand") or []:
            found.update(part.strip() for part in str(entry).split(","))
        return found

    async def search_classic(self, request: web.Request) -> web.Response:
        if self.deployment == "Cloud":
            return web.json_response(
                {
                    "errorMessages": [
                        "The requested API has been removed. Please migrate to the"
                        " /rest/api/3/search/jql API. A full migration guideline is available"
                        " at https://developer.atlassian.com/changelog/#CHANGE-2046"
                    ],
                    "errors": {},
                },
                status=410,
            )
        params = await self._params(request)
        jql = (params.get("jql") or [""])[0]
        start_at = int((params.get("startAt") or ["0"])[0])
        max_results = min(int((params.get("maxResults") or ["50"])[0]), 1000)
        validate = str((params.get("validateQuery") or ["true"])[0]).lower()
        warnings: list[str] = []
        found = self._matching(jql, validate=validate in ("true", "strict", "1"), warnings=warnings)
        page = found[start_at : start_at + max_results]
        version = request.match_info["version"]
        wanted, expand = self._fields_wanted(params), self._expand(params)
        return web.json_response(
            {
                "expand": "schema,names",
                "startAt": start_at,
                "maxResults": max_results,
                "total": len(found),
                "issues": [
                    self._issue_json(request, issue, version=version, wanted=wanted, expand=expand)
                    for issue in page
                ],
                **({"warningMessages": warnings} if warnings else {}),
            }
        )

    async def search_jql(self, request: web.Request) -> web.Response:
        if self.deployment != "Cloud":
            raise web.HTTPNotFound()
        params = await self._params(request)
        jql = (params.get("jql") or [""])[0]
        if not jql.strip() or jql.strip().lower().startswith("order by"):
            return web.json_response(
                {
                    "errorMessages": [
                        "Unbounded JQL queries are not allowed here."
                        " Please add a search restriction to your query."
                    ]
                },
                status=400,
            )
        wanted, expand = self._fields_wanted(params), self._expand(params)
        only_ids = wanted is not None and wanted <= {"id", "key"}
        max_results = min(int((params.get("maxResults") or ["50"])[0]), 5000 if only_ids else 100)
        token = (params.get("nextPageToken") or [None])[0]
        offset = 0
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                offset = int(decoded["offset"])
            except (ValueError, KeyError):
                return web.json_response({"errorMessages": ["Invalid nextPageToken."]}, status=400)
        found = self._matching(jql)
        page = found[offset : offset + max_results]
        version = request.match_info["version"]
        body: dict[str, Any] = {
            "issues": [
                self._issue_json(request, issue, version=version, wanted=wanted, expand=expand)
                for issue in page
            ]
        }
        if offset + max_results < len(found):
            body["nextPageToken"] = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + max_results}).encode()
            ).decode()
            body["isLast"] = False
        else:
            body["isLast"] = True
        return web.json_response(body)

    async def approximate_count(self, request: web.Request) -> web.Response:
        if self.deployment != "Cloud" or not self.approximate_count_enabled:
            raise web.HTTPNotFound()
        body = await request.json()
        return web.json_response({"count": len(self._matching(str(body.get("jql", ""))))})

    async def get_issue(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        params = await self._params(request)
        return web.json_response(
            self._issue_json(
                request,
                issue,
                version=request.match_info["version"],
                wanted=self._fields_wanted(params),
                expand=self._expand(params),
            )
        )

    async def put_issue(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        body = await request.json()
        settable = {"summary", "description", "labels", "priority", "assignee"}
        unknown = [name for name in body.get("fields", {}) if name not in settable]
        if unknown:
            return web.json_response(
                {
                    "errorMessages": [],
                    "errors": {
                        name: f"Field '{name}' cannot be set."
                        " It is not on the appropriate screen, or unknown."
                        for name in unknown
                    },
                },
                status=400,
            )
        self.update_issue(issue.key, **body.get("fields", {}))
        return web.Response(status=204)

    async def changelog(self, request: web.Request) -> web.Response:
        if self.deployment != "Cloud":
            raise web.HTTPNotFound()
        issue = self._find(request.match_info["key"])
        start_at = int(request.query.get("startAt", "0"))
        max_results = min(int(request.query.get("maxResults", "100")), 100)
        values = issue.histories[start_at : start_at + max_results]
        return web.json_response(
            {
                "self": str(request.url),
                "maxResults": max_results,
                "startAt": start_at,
                "total": len(issue.histories),
                "isLast": start_at + len(values) >= len(issue.histories),
                "values": values,
            }
        )

    async def get_transitions(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        current = (issue.fields.get("status") or {}).get("name")
        return web.json_response(
            {
                "expand": "transitions",
                "transitions": [
                    {
                        "id": transition_id,
                        "name": name,
                        "to": {"name": target, "id": STATUSES[target][0]},
                        "hasScreen": False,
                        "isGlobal": True,
                    }
                    for transition_id, name, target in TRANSITIONS
                    if target != current
                ],
            }
        )

    async def post_transition(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        body = await request.json()
        wanted = str((body.get("transition") or {}).get("id"))
        for transition_id, _, target in TRANSITIONS:
            if transition_id == wanted:
                self.update_issue(issue.key, status=target)
                return web.Response(status=204)
        return web.json_response(
            {
                "errorMessages": [f"Transition id '{wanted}' is not valid for this issue."],
                "errors": {},
            },
            status=400,
        )

    async def get_comments(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        base, version = self._base(request), request.match_info["version"]
        comments = [self._comment_json(base, version, issue, c) for c in issue.comments]
        return web.json_response(
            {
                "comments": comments,
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            }
        )

    async def post_comment(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        body = await request.json()
        text = body.get("body")
        if isinstance(text, dict):
            from bot.jira.issues import adf_text

            text = adf_text(text)
        stamp = self.tick()
        comment = {
            "id": self._id(),
            "author": "biagent bot",
            "body": str(text),
            "created_ms": stamp,
        }
        issue.comments.append(comment)
        issue.updated_ms = stamp
        self._changed()
        return web.json_response(
            self._comment_json(self._base(request), request.match_info["version"], issue, comment),
            status=201,
        )

    async def attachment_meta(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(request.match_info["id"])
        if attachment is None:
            raise web.HTTPNotFound()
        return web.json_response(
            self._attachment_json(self._base(request), request.match_info["version"], attachment)
        )

    async def attachment_content(self, request: web.Request) -> web.StreamResponse:
        attachment = self.attachments.get(request.match_info["id"])
        if attachment is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse(headers={"Content-Type": attachment.mime_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            # As a Jira behind a compressing proxy: the length on the wire is not the file's.
            response.enable_compression(web.ContentCoding.gzip)
        else:
            response.content_length = attachment.size
        await response.prepare(request)
        for chunk in attachment.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response
