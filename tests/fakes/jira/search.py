"""The fake Jira's search routes: Server's paged `/search`, Cloud's `/search/jql` and count.

Part of the Jira protocol fake (tests/fakes/jira/). Server pages with startAt/maxResults/total
and may skip validating a query (`validateQuery=false` makes an unknown `id` a warning); Cloud
pages with nextPageToken/isLast, refuses unbounded queries, answers the old `/search` with 410
Gone as it does since 2025, and may lack `POST /search/approximate-count` (404).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.jira.params import expansions, fields_wanted, request_params
from tests.fakes.jira.render import IssueRenderer

if TYPE_CHECKING:
    from tests.fakes.jira.fake import FakeJira


class SearchRoutes:
    """JQL searches over one `FakeJira`'s issues."""

    def __init__(self, jira: FakeJira, renderer: IssueRenderer) -> None:
        self.jira = jira
        self.renderer = renderer

    async def search_classic(self, request: web.Request) -> web.Response:
        if self.jira.deployment == "Cloud":
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
        params = await request_params(request)
        jql = (params.get("jql") or [""])[0]
        start_at = int((params.get("startAt") or ["0"])[0])
        max_results = min(int((params.get("maxResults") or ["50"])[0]), 1000)
        validate = str((params.get("validateQuery") or ["true"])[0]).lower()
        warnings: list[str] = []
        found = self.jira.matching(
            jql, validate=validate in ("true", "strict", "1"), warnings=warnings
        )
        page = found[start_at : start_at + max_results]
        version = request.match_info["version"]
        wanted, expand = fields_wanted(params), expansions(params)
        return web.json_response(
            {
                "expand": "schema,names",
                "startAt": start_at,
                "maxResults": max_results,
                "total": len(found),
                "issues": [
                    self.renderer.issue_json(
                        request, issue, version=version, wanted=wanted, expand=expand
                    )
                    for issue in page
                ],
                **({"warningMessages": warnings} if warnings else {}),
            }
        )

    async def search_jql(self, request: web.Request) -> web.Response:
        if self.jira.deployment != "Cloud":
            raise web.HTTPNotFound()
        params = await request_params(request)
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
        wanted, expand = fields_wanted(params), expansions(params)
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
        found = self.jira.matching(jql)
        page = found[offset : offset + max_results]
        version = request.match_info["version"]
        body: dict[str, Any] = {
            "issues": [
                self.renderer.issue_json(
                    request, issue, version=version, wanted=wanted, expand=expand
                )
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
        if self.jira.deployment != "Cloud" or not self.jira.approximate_count_enabled:
            raise web.HTTPNotFound()
        body = await request.json()
        return web.json_response({"count": len(self.jira.matching(str(body.get("jql", ""))))})
