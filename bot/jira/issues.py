"""Jira's issue JSON -> the mirror's `TicketRecord` (Server v2, Cloud v2/v3, webhook payloads).

Times are read with their zone (`2018-12-19T12:36:15.507+0300`), or as epoch numbers (Cloud
sends `"updated": 1` in places), and kept as UTC text and as epoch milliseconds, the unit of the
sync's watermark. Cloud v3 bodies are Atlassian Document
Format; they are flattened to plain text here so the mirror holds one kind of text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.tickets import AttachmentMeta, LinkEnd, TicketLink, TicketRecord
from storage.timestamps import to_text

# What the sync asks Jira for: everything the mirror keeps and nothing more.
SYNC_FIELDS = [
    "summary",
    "description",
    "status",
    "issuetype",
    "priority",
    "assignee",
    "reporter",
    "resolution",
    "project",
    "labels",
    "components",
    "created",
    "updated",
    "issuelinks",
    "attachment",
    "parent",
    "subtasks",
    "comment",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch numbers at least this large are milliseconds: as seconds they would be past year 5000,
# as milliseconds they are after March 1973.
_EPOCH_MS_FROM = 100_000_000_000
_EPOCH_DIGITS = re.compile(r"^-?\d+(?:\.\d+)?$")


def _from_epoch(number: float) -> datetime:
    milliseconds = number if abs(number) >= _EPOCH_MS_FROM else number * 1000
    try:
        return _EPOCH + timedelta(milliseconds=milliseconds)
    except OverflowError:
        raise ValueError(f"not a Jira timestamp: {number!r}") from None


def parse_jira_time(value: Any) -> datetime:
    """Jira's `2018-12-19T12:36:15.507+0300` (or `...Z`, or without millis) as aware UTC.

    An epoch number (int, float or a string of digits) is read as seconds, or as milliseconds
    when it is that large; anything else is a ValueError.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"not a Jira timestamp: {value!r}")
    cleaned = value.strip()
    if _EPOCH_DIGITS.match(cleaned):
        return _from_epoch(float(cleaned) if "." in cleaned else int(cleaned))
    cleaned = cleaned.replace("Z", "+0000")
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(cleaned, pattern).astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"not a Jira timestamp: {value!r}")


def epoch_ms(instant: datetime) -> int:
    """Exact epoch milliseconds (no float rounding: `.507` stays 507)."""
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def updated_ms_of(issue: dict[str, Any]) -> int:
    return epoch_ms(parse_jira_time(issue["fields"]["updated"]))


def adf_text(node: Any) -> str:
    """Plain text of an Atlassian Document Format node (or the string itself)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "".join(adf_text(child) for child in node)
    if not isinstance(node, dict):
        return str(node)
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji"):
        attrs = node.get("attrs") or {}
        return str(attrs.get("text") or attrs.get("shortName") or "")
    inner = adf_text(node.get("content") or [])
    if kind in ("paragraph", "heading", "codeBlock", "blockquote", "rule"):
        return inner + "\n"
    if kind == "listItem":
        return "- " + inner
    return inner


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = adf_text(value).strip("\n")
    return text


def _name(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return value.get("name") or value.get("value")


def _person(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return value.get("displayName") or value.get("name") or value.get("accountId")


def _time_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return to_text(parse_jira_time(value))
    except ValueError:
        return None


def normalize_history(history: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(history.get("id", "")),
        "author": _person(history.get("author")),
        "created": _time_text(history.get("created")),
        "items": [
            {
                "field": item.get("field"),
                "from": item.get("fromString")
                if item.get("fromString") is not None
                else item.get("from"),
                "to": item.get("toString") if item.get("toString") is not None else item.get("to"),
            }
            for item in history.get("items") or []
        ],
    }


def normalize_comment(comment: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(comment.get("id", "")),
        "author": _person(comment.get("author")),
        "body": _text(comment.get("body")) or "",
        "created": _time_text(comment.get("created")),
        "updated": _time_text(comment.get("updated")),
    }


def changelog_is_truncated(issue: dict[str, Any]) -> bool:
    changelog = issue.get("changelog")
    if not isinstance(changelog, dict):
        return False
    histories = changelog.get("histories") or []
    total = changelog.get("total")
    return isinstance(total, int) and total > len(histories)


def _links(issue_id: str, key: str, fields: dict[str, Any]) -> tuple[LinkEnd, ...]:
    ends = []
    for raw in fields.get("issuelinks") or []:
        link_type = raw.get("type") or {}
        if "outwardIssue" in raw:
            other, direction = raw["outwardIssue"], "outward"
            relation, reverse = link_type.get("outward", ""), link_type.get("inward", "")
        elif "inwardIssue" in raw:
            other, direction = raw["inwardIssue"], "inward"
            relation, reverse = link_type.get("inward", ""), link_type.get("outward", "")
        else:
            continue
        other_fields = other.get("fields") or {}
        ends.append(
            LinkEnd(
                ticket_id=issue_id,
                ticket_key=key,
                link=TicketLink(
                    link_id=str(raw.get("id")),
                    direction=direction,
                    link_type=str(link_type.get("name", "")),
                    relation=str(relation),
                    other_id=str(other.get("id")),
                    other_key=str(other.get("key")),
                    other_summary=other_fields.get("summary"),
                    other_status=_name(other_fields.get("status")),
                ),
                reverse_relation=str(reverse),
            )
        )
    return tuple(ends)


def _attachments(issue_id: str, fields: dict[str, Any]) -> tuple[AttachmentMeta, ...]:
    found = []
    for raw in fields.get("attachment") or []:
        size = raw.get("size")
        found.append(
            AttachmentMeta(
                id=str(raw.get("id")),
                ticket_id=issue_id,
                filename=str(raw.get("filename") or f"attachment-{raw.get('id')}"),
                mime_type=raw.get("mimeType"),
                size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
                author=_person(raw.get("author")),
                created_at=_time_text(raw.get("created")),
                content_url=str(raw.get("content") or ""),
            )
        )
    return tuple(found)


def ticket_from_issue(
    issue: dict[str, Any], *, histories: list[dict[str, Any]] | None = None
) -> TicketRecord:
    """Normalize one issue; `histories` replaces a truncated changelog when given."""
    issue_id = str(issue["id"])
    key = str(issue["key"])
    fields = issue.get("fields") or {}
    updated = parse_jira_time(fields["updated"])
    project = fields.get("project") or {}
    status = fields.get("status") or {}
    if histories is None:
        histories = list((issue.get("changelog") or {}).get("histories") or [])
    comment_block = fields.get("comment")
    comments = comment_block.get("comments", []) if isinstance(comment_block, dict) else []
    return TicketRecord(
        id=issue_id,
        key=key,
        project=str(project.get("key") or key.rsplit("-", 1)[0]),
        summary=str(fields.get("summary") or ""),
        description=_text(fields.get("description")),
        status=_name(status),
        status_category=(status.get("statusCategory") or {}).get("key") if status else None,
        issue_type=_name(fields.get("issuetype")),
        priority=_name(fields.get("priority")),
        assignee=_person(fields.get("assignee")),
        reporter=_person(fields.get("reporter")),
        resolution=_name(fields.get("resolution")),
        labels=tuple(str(label) for label in fields.get("labels") or []),
        components=tuple(
            str(_name(component))
            for component in fields.get("components") or []
            if _name(component)
        ),
        parent_key=(fields.get("parent") or {}).get("key"),
        subtask_keys=tuple(str(sub.get("key")) for sub in fields.get("subtasks") or []),
        comments=tuple(normalize_comment(comment) for comment in comments),
        changelog=tuple(
            sorted(
                (normalize_history(history) for history in histories),
                key=lambda history: (history["created"] or "", history["id"]),
            )
        ),
        created_at=_time_text(fields.get("created")),
        updated_at=to_text(updated),
        updated_ms=epoch_ms(updated),
        links=_links(issue_id, key, fields),
        attachments=_attachments(issue_id, fields),
    )
