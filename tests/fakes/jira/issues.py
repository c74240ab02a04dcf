"""The fake Jira's issue routes: an issue, its field updates, changelog, transitions,
comments and attachments.

Part of the Jira protocol fake (tests/fakes/jira/). An issue is found by id or key (any case);
Cloud pages an issue's changelog; attachment content is streamed in chunks, whatever its size,
and gzipped when the client accepts it, as behind a compressing proxy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from tests.fakes.jira.model import STATUSES, TRANSITIONS, FakeIssue
from tests.fakes.jira.params import expansions, fields_wanted, request_params
from tests.fakes.jira.render import IssueRenderer

if TYPE_CHECKING:
    from tests.fakes.jira.fake import FakeJira


class IssueRoutes:
    """Reading and changing one `FakeJira`'s issues over REST."""

    def __init__(self, jira: FakeJira, renderer: IssueRenderer) -> None:
        self.jira = jira
        self.renderer = renderer

    def _find(self, key: str) -> FakeIssue:
        issue_id = key if key in self.jira.issues else self.jira.by_key.get(key.upper())
        if issue_id is None or issue_id not in self.jira.issues:
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
        return self.jira.issues[issue_id]

    async def get_issue(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        params = await request_params(request)
        return web.json_response(
            self.renderer.issue_json(
                request,
                issue,
                version=request.match_info["version"],
                wanted=fields_wanted(params),
                expand=expansions(params),
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
        self.jira.update_issue(issue.key, **body.get("fields", {}))
        return web.Response(status=204)

    async def changelog(self, request: web.Request) -> web.Response:
        if self.jira.deployment != "Cloud":
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
                self.jira.update_issue(issue.key, status=target)
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
        base, version = self.renderer.base(request), request.match_info["version"]
        comments = [self.renderer.comment_json(base, version, issue, c) for c in issue.comments]
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
        comment = self.jira.add_comment(issue.key, str(text))
        return web.json_response(
            self.renderer.comment_json(
                self.renderer.base(request), request.match_info["version"], issue, comment
            ),
            status=201,
        )

    async def attachment_meta(self, request: web.Request) -> web.Response:
        attachment = self.jira.attachments.get(request.match_info["id"])
        if attachment is None:
            raise web.HTTPNotFound()
        return web.json_response(
            self.renderer.attachment_json(
                self.renderer.base(request), request.match_info["version"], attachment
            )
        )

    async def attachment_content(self, request: web.Request) -> web.StreamResponse:
        attachment = self.jira.attachments.get(request.match_info["id"])
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
