"""How the fake Jira renders its records as REST JSON: issues, links, attachments, comments.

Part of the Jira protocol fake (tests/fakes/jira/). The shapes are those of the recorded
payloads in tests/fixtures/jira; every `self` and attachment `content` URL is built on the
site's configured base URL, or on the address the request came to when there is none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.jira.model import (
    BASE_MS,
    FakeAttachment,
    FakeIssue,
    FakeLink,
    jira_time,
    to_adf,
)

if TYPE_CHECKING:
    from tests.fakes.jira.fake import FakeJira


class IssueRenderer:
    """Renders the records of one `FakeJira` as API v2 or v3 JSON."""

    def __init__(self, jira: FakeJira) -> None:
        self.jira = jira

    def base(self, request: web.Request) -> str:
        return self.jira.base_url or f"{request.scheme}://{request.host}"

    def issue_json(
        self,
        request: web.Request,
        issue: FakeIssue,
        *,
        version: str,
        wanted: set[str] | None,
        expand: set[str],
    ) -> dict[str, Any]:
        base = self.base(request)
        fields = self._fields(base, version, issue)
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
            rendered["changelog"] = self._changelog(issue)
        return rendered

    def _fields(self, base: str, version: str, issue: FakeIssue) -> dict[str, Any]:
        """Every field of `issue`: its own, then what Jira adds from the site and its relations."""
        fields: dict[str, Any] = dict(issue.fields)
        fields["project"] = {
            "id": "1" + str(abs(hash(issue.project)) % 10000),
            "key": issue.project,
            "name": self.jira.projects.get(issue.project, issue.project),
            "self": f"{base}/rest/api/{version}/project/{issue.project}",
        }
        fields["updated"] = (
            issue.rendered_updated
            if issue.rendered_updated is not None
            else jira_time(issue.updated_ms)
        )
        fields["created"] = jira_time(issue.created_ms)
        relations = self.jira.relations()
        fields["issuelinks"] = [
            self.link_json(base, version, link, issue.id) for link in relations.links[issue.id]
        ]
        fields["attachment"] = [
            self.attachment_json(base, version, attachment)
            for attachment in relations.attachments[issue.id]
        ]
        fields["subtasks"] = [
            {"id": other.id, "key": other.key, "fields": {"summary": other.fields["summary"]}}
            for other in relations.children[issue.id]
        ]
        fields["comment"] = {
            "comments": [self.comment_json(base, version, issue, c) for c in issue.comments],
            "maxResults": len(issue.comments),
            "total": len(issue.comments),
            "startAt": 0,
        }
        if version == "3":
            fields["description"] = to_adf(fields.get("description"))
        return fields

    def _changelog(self, issue: FakeIssue) -> dict[str, Any]:
        """The histories shown inside an issue: Cloud cuts them at the site's limit."""
        histories = issue.histories
        limit = self.jira.search_changelog_limit
        shown = histories[:limit] if limit else histories
        return {
            "startAt": 0,
            "maxResults": len(shown),
            "total": len(histories),
            "histories": shown,
        }

    def link_json(self, base: str, version: str, link: FakeLink, issue_id: str) -> dict[str, Any]:
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
            other, side = self.jira.issues[link.outward_issue], "outwardIssue"
        else:
            other, side = self.jira.issues[link.inward_issue], "inwardIssue"
        rendered[side] = {
            "id": other.id,
            "key": other.key,
            "self": f"{base}/rest/api/{version}/issue/{other.id}",
            "fields": {"summary": other.fields["summary"], "status": other.fields.get("status")},
        }
        return rendered

    def attachment_json(
        self, base: str, version: str, attachment: FakeAttachment
    ) -> dict[str, Any]:
        content = (
            f"{base}/rest/api/3/attachment/content/{attachment.id}"
            if self.jira.deployment == "Cloud"
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

    def comment_json(
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
