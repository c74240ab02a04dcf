"""The fake Jira's HTTP face: its routes, and the gate every request passes first.

Part of the Jira protocol fake (tests/fakes/jira/). The gate records each request, checks its
credentials (Basic email:token, or a Bearer token), answers 429 with Retry-After while the
fake owes throttles, and turns a `JqlError` into Jira's 400. The handlers live in one module
per part of the API: site.py, search.py, issues.py.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.jira.issues import IssueRoutes
from tests.fakes.jira.jql import JqlError
from tests.fakes.jira.model import Recorded
from tests.fakes.jira.render import IssueRenderer
from tests.fakes.jira.search import SearchRoutes
from tests.fakes.jira.site import SiteRoutes

if TYPE_CHECKING:
    from tests.fakes.jira.fake import FakeJira


def build_app(jira: FakeJira) -> web.Application:
    """The aiohttp application serving `jira` under /rest/api/{2,3,latest}."""
    renderer = IssueRenderer(jira)
    site = SiteRoutes(jira, renderer)
    search = SearchRoutes(jira, renderer)
    issues = IssueRoutes(jira, renderer)
    app = web.Application(middlewares=[RequestGate(jira).middleware])
    api = "/rest/api/{version:2|3|latest}"
    app.router.add_get(f"{api}/serverInfo", site.server_info)
    app.router.add_get(f"{api}/myself", site.myself)
    app.router.add_get(f"{api}/project", site.project_list)
    app.router.add_get(f"{api}/field", site.field_list)
    app.router.add_route("*", f"{api}/search", search.search_classic)
    app.router.add_route("*", f"{api}/search/jql", search.search_jql)
    app.router.add_post(f"{api}/search/approximate-count", search.approximate_count)
    app.router.add_get(f"{api}/issue/{{key}}", issues.get_issue)
    app.router.add_put(f"{api}/issue/{{key}}", issues.put_issue)
    app.router.add_get(f"{api}/issue/{{key}}/changelog", issues.changelog)
    app.router.add_get(f"{api}/issue/{{key}}/transitions", issues.get_transitions)
    app.router.add_post(f"{api}/issue/{{key}}/transitions", issues.post_transition)
    app.router.add_get(f"{api}/issue/{{key}}/comment", issues.get_comments)
    app.router.add_post(f"{api}/issue/{{key}}/comment", issues.post_comment)
    app.router.add_get(f"{api}/attachment/{{id:[0-9]+}}", issues.attachment_meta)
    app.router.add_get(f"{api}/attachment/content/{{id}}", issues.attachment_content)
    app.router.add_get("/secure/attachment/{id}/{filename}", issues.attachment_content)
    return app


class RequestGate:
    """What every request to the fake meets before its handler."""

    def __init__(self, jira: FakeJira) -> None:
        self.jira = jira

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except ValueError:
                return False
            return decoded == f"{self.jira.email}:{self.jira.token}"
        if header.startswith("Bearer "):
            return header[7:] == self.jira.token
        return False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.jira.requests.append(
            Recorded(
                request.method,
                request.path,
                {k: request.query.getall(k) for k in request.query},
                dict(request.headers),
            )
        )
        if not self.authorized(request):
            return web.json_response(
                {
                    "errorMessages": [
                        "You are not authenticated."
                        " Authentication required to perform this operation."
                    ]
                },
                status=401,
            )
        if self.jira.throttle_queue:
            retry_after = self.jira.throttle_queue.pop(0)
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
