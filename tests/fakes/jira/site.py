"""The fake Jira's site routes: serverInfo, myself, the project and field lists.

Part of the Jira protocol fake (tests/fakes/jira/). serverInfo tells the client whether it talks
to Jira Server or Cloud (`deploymentType`), which decides how biagent searches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.jira.model import jira_time
from tests.fakes.jira.render import IssueRenderer

if TYPE_CHECKING:
    from tests.fakes.jira.fake import FakeJira


class SiteRoutes:
    """What a client asks a Jira site about itself."""

    def __init__(self, jira: FakeJira, renderer: IssueRenderer) -> None:
        self.jira = jira
        self.renderer = renderer

    async def server_info(self, request: web.Request) -> web.Response:
        info: dict[str, Any] = {
            "baseUrl": self.renderer.base(request),
            "version": "9.12.2" if self.jira.deployment == "Server" else "1001.0.0-SNAPSHOT",
            "versionNumbers": [9, 12, 2] if self.jira.deployment == "Server" else [1001, 0, 0],
            "deploymentType": self.jira.deployment,
            "buildNumber": 100000,
            "serverTime": jira_time(self.jira.now_ms),
            "serverTitle": "Fake Jira",
        }
        return web.json_response(info)

    async def myself(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "bot", "displayName": "biagent bot", "emailAddress": self.jira.email}
        )

    async def project_list(self, request: web.Request) -> web.Response:
        base = self.renderer.base(request)
        return web.json_response(
            [
                {
                    "id": str(index),
                    "key": key,
                    "name": name,
                    "self": f"{base}/rest/api/2/project/{key}",
                }
                for index, (key, name) in enumerate(sorted(self.jira.projects.items()), start=10000)
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
