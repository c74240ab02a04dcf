"""The fake Jira's records and constants: issues, links, attachments, statuses, times, ADF.

Part of the Jira protocol fake (tests/fakes/jira/): the shapes every other part of it reads.
Times are rendered in the account's zone as Jira does; descriptions and comments become ADF
documents on API v3.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

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


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)
