"""The fake Jira itself: its site settings, the issues it holds and the controls tests drive.

Part of the Jira protocol fake (tests/fakes/jira/). `FakeJira` owns every piece of state:
issues, links, attachments, comments, its clock, the requests it received and the 429s it
owes; tests add and change issues through it, then point the real `jira` library at `url`.
Its HTTP face (tests/fakes/jira/server.py and the route modules) reads and changes that state
through the methods here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.jira.jql import JqlError, Parser, sort_key
from tests.fakes.jira.model import (
    BASE_MS,
    LINK_TYPES,
    STATUSES,
    FakeAttachment,
    FakeIssue,
    FakeLink,
    Recorded,
    jira_time,
)
from tests.fakes.jira.server import build_app


@dataclass
class IssueRelations:
    """Links, attachments and sub-tasks by issue id."""

    links: defaultdict[str, list[FakeLink]]
    attachments: defaultdict[str, list[FakeAttachment]]
    children: defaultdict[str, list[FakeIssue]]


class FakeJira:
    """One Jira site on loopback: Server or Cloud, its issues, and what it was asked."""

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
        self._relations: IssueRelations | None = None
        self.server: TestServer | None = None
        self.app: web.Application = build_app(self)

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
        self._query_cache.clear()
        self._relations = None

    def relations(self) -> IssueRelations:
        """Links, attachments and sub-tasks by issue id, rebuilt after a change."""
        if self._relations is None:
            index = IssueRelations(defaultdict(list), defaultdict(list), defaultdict(list))
            for link in self.links.values():
                index.links[link.inward_issue].append(link)
                index.links[link.outward_issue].append(link)
            for attachment in self.attachments.values():
                index.attachments[attachment.issue_id].append(attachment)
            for other in self.issues.values():
                parent_id = (other.fields.get("parent") or {}).get("id")
                if parent_id:
                    index.children[parent_id].append(other)
            self._relations = index
        return self._relations

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

    def add_comment(self, key: str, text: str) -> dict[str, Any]:
        """A comment by the bot on the issue `key`, as `POST .../comment` makes one."""
        issue = self.issue(key)
        stamp = self.tick()
        comment = {
            "id": self._id(),
            "author": "biagent bot",
            "body": text,
            "created_ms": stamp,
        }
        issue.comments.append(comment)
        issue.updated_ms = stamp
        self._changed()
        return comment

    def throttle(self, retry_after: float, times: int = 1) -> None:
        """Answer the next `times` API requests 429 with this Retry-After."""
        self.throttle_queue.extend([retry_after] * times)

    def requests_to(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    # -- queries ---------------------------------------------------------------------------

    def matching(
        self, jql: str, *, validate: bool = True, warnings: list[str] | None = None
    ) -> list[FakeIssue]:
        """The issues `jql` finds, in its order.

        Like Jira, an `id = N` or `id in (...)` naming an issue that does not exist is a 400
        when the query is validated (always on Cloud; on Server unless validateQuery=false),
        otherwise a warning.
        """
        cached = self._query_cache.get(jql)
        if cached is None:
            parser = Parser(jql)
            predicate, order = parser.parse()
            found = [issue for issue in self.issues.values() if predicate(issue)]
            found.sort(key=sort_key(order or [("key", False)]))
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
