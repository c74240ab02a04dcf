"""A world for pipeline end-to-end tests: the real app with the scripted model, the JIRA fake,
the GitHub fake and a local bare remote standing for the repository.

The ticket lives in the JIRA fake and reaches the app through a real sync; the repository is
registered through the API and linked to the ticket; each agent answers from its own script
(`PipelineModel`), recognised by its system prompt, so a test scripts one phase without
counting the others' requests. By default every agent reports a plausible output at once
(review_response has no default: a test scripts it). The GitHub fake serves the repository
from the bare remote, so the pull request a pipeline opens carries its clone URL and head sha,
and `PullRequestWebhooks` sends GitHub's deliveries about it.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.clock import ManualClock
from bot.config import Secret, Settings
from tests.conftest import AppClient, StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic, RecordedRequest, Reply
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, github_headers, jira_settings, load_json
from tests.worktree_helpers import Remote, git, make_remote
from web.keys import DISPATCHER, PIPELINES, REVIEW_SCHEDULER, SERVICES

REPO = "Codertocat/Hello-World"
INSTALLATION = 1
PROJECT = "ACME"
TEST_COMMAND = "python3 -m unittest -q"
REVIEWER_USER = {"login": "Codertocat", "id": 21031067, "type": "User"}
FILES = {
    "greet.py": 'def greet(name):\n    return "Hi " + name\n',
    "test_greet.py": (
        "import unittest\n\nfrom greet import greet\n\n\n"
        "class GreetTest(unittest.TestCase):\n"
        "    def test_greets_by_name(self):\n"
        '        self.assertIn("Ada", greet("Ada"))\n'
    ),
    ".github/biagent.yml": f"setup: []\ntest: {TEST_COMMAND}\n",
}

# Each agent's system prompt begins with one of these (bot/agents/agents.yml).
AGENT_PROMPTS = {
    "triage": "You triage a JIRA ticket",
    "researcher": "You run a time-boxed spike",
    "planner": "You plan the implementation",
    "risk": "You review an implementation plan for risks",
    "implementer": "You implement a planned change",
    "tester": "You test a change",
    "reviewer": "You review the branch's diff",
    "pr_author": "You write the pull request",
    "review_response": "You address code review",
}

DEFAULT_REPORTS: dict[str, dict[str, Any]] = {
    "triage": {"cycle_type": "backend", "summary": "A backend change to greet()."},
    "researcher": {"findings": "greet() is one line.", "recommendation": "Keep it."},
    "planner": {"plan": "1. Change greet() to say Hello.\n2. Keep the test.", "files": []},
    "risk": {"risks": []},
    "implementer": {"summary": "greet() says Hello."},
    "tester": {"passed": True, "summary": "1 test, OK"},
    "reviewer": {"approved": True, "findings": []},
    "pr_author": {"title": "Say hello in greet()", "body": "greet() now says Hello."},
}

Turn = Reply | Callable[[RecordedRequest], Reply]


def report(output: dict[str, Any]) -> Reply:
    return scripted.tool_use("report_output", output)


def done(text: str = "Done.") -> Reply:
    return scripted.text(text)


def agent_of(request: RecordedRequest) -> str:
    system = request.body.get("system") or ""
    text = system if isinstance(system, str) else json.dumps(system)
    for agent, opening in AGENT_PROMPTS.items():
        if opening in text:
            return agent
    raise AssertionError(f"a request from an unknown agent: {text[:200]!r}")


class PipelineModel:
    """The scripted model, one queue of turns per agent; an agent with an empty queue reports
    its default output and ends its turn."""

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        self.turns: dict[str, deque[Turn]] = {agent: deque() for agent in AGENT_PROMPTS}
        self.asked: list[tuple[str, RecordedRequest]] = []
        fake.add(*([self._answer] * 5000))

    def script(self, agent: str, *turns: Turn) -> None:
        self.turns[agent].extend(turns)

    def _answer(self, request: RecordedRequest) -> Reply:
        agent = agent_of(request)
        self.asked.append((agent, request))
        queue = self.turns[agent]
        if queue:
            turn = queue.popleft()
            return turn(request) if callable(turn) else turn
        last = request.messages[-1]["content"]
        if isinstance(last, list) and any(
            block.get("type") == "tool_result" for block in last if isinstance(block, dict)
        ):
            return done()
        return report(DEFAULT_REPORTS[agent])

    def requests_of(self, agent: str) -> list[RecordedRequest]:
        return [request for asked, request in self.asked if asked == agent]

    def script_gated_change(self) -> None:
        """A backend run through both gates: the risk agent reports a high risk, and the
        implementer makes greet() say Hello (a real edit on the branch)."""
        self.script(
            "risk",
            report({"risks": [{"title": "Greeting change", "severity": "high", "detail": "UX"}]}),
            done(),
        )
        self.script(
            "implementer",
            scripted.tool_use(
                "edit_file", {"path": "greet.py", "old_text": '"Hi "', "new_text": '"Hello "'}
            ),
            report({"summary": "greet() says Hello."}),
            done(),
        )


@dataclasses.dataclass
class PipelineWorld:
    start_app: StartApp
    tmp_path: Path
    github: FakeGitHub
    jira: FakeJira
    anthropic: FakeAnthropic
    app_key: tuple[str, str]
    clock: ManualClock
    remote: Remote = dataclasses.field(init=False)
    model: PipelineModel = dataclasses.field(init=False)
    webhooks: PullRequestWebhooks = dataclasses.field(init=False)
    client: AppClient | None = None

    def __post_init__(self) -> None:
        self.remote = make_remote(self.tmp_path, "hello-world", FILES)
        self.model = PipelineModel(self.anthropic)
        self.webhooks = PullRequestWebhooks(self)
        self.github.installations[INSTALLATION] = {"repositories": [REPO]}
        self.github.serve_repository(REPO, self.remote.bare)

    def settings(self, **more: Any) -> Settings:
        return jira_settings(
            self.tmp_path,
            self.jira,
            github_app_id=str(self.github.app_id),
            github_private_key=Secret(self.app_key[0]),
            github_api_url=self.github.base_url,
            github_write_spacing_seconds=0.0,
            anthropic_configured=True,
            anthropic_base_url=self.anthropic.base_url,
            worktree_spares=0,
            **more,
        )

    async def start(self, **more: Any) -> AppClient:
        self.client = await self.start_app(self.settings(**more), clock=self.clock)
        return self.client

    @property
    def app_client(self) -> AppClient:
        assert self.client is not None
        return self.client

    async def api(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = await self.app_client.request(method, path, json=body, headers=auth_headers())
        answer = await response.json()
        assert response.status == status, answer
        return answer

    async def ticket(self, summary: str = "Greet people by saying Hello", **fields: Any) -> str:
        """A ticket in the JIRA fake, synced into the mirror and linked to the repository."""
        key = self.jira.add_issue(PROJECT, summary, **fields)
        await self.api("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
        await self.register()
        await self.api("PUT", f"/api/tickets/{key}/repositories", {"repositories": [REPO]})
        return key

    async def register(self) -> None:
        """Register the repository (once: a second registration answers 200, not 201)."""
        body = {"full_name": REPO, "clone_url": self.remote.url, "installation_id": INSTALLATION}
        response = await self.app_client.post(
            "/api/repositories", json=body, headers=auth_headers()
        )
        assert response.status in (200, 201), await response.text()

    async def create(self, key: str, **body: Any) -> dict[str, Any]:
        answer = await self.api("POST", "/api/pipelines", {"ticket": key, **body}, status=201)
        return answer["pipeline"]

    async def settle(self, pipeline_id: int) -> dict[str, Any]:
        """Wait until the pipeline's task stops (it ends, fails or a gate holds); its view."""
        await self.app_client.app[PIPELINES].engine.tasks.wait(pipeline_id)
        return await self.pipeline(pipeline_id)

    async def pipeline(self, pipeline_id: int) -> dict[str, Any]:
        return (await self.api("GET", f"/api/pipelines/{pipeline_id}"))["pipeline"]

    async def act(self, pipeline_id: int, path: str, body: Any = None) -> dict[str, Any]:
        """POST an action and wait for what it set going; the pipeline's view after it."""
        await self.api("POST", f"/api/pipelines/{pipeline_id}/{path}", body)
        return await self.settle(pipeline_id)

    async def drive(self, pipeline_id: int, *, by: str = "mia") -> dict[str, Any]:
        """Settle, releasing each gate as it holds (approve the plan, acknowledge high risks),
        until the pipeline stops for anything else; its view then."""
        view = await self.settle(pipeline_id)
        while view["status"] == "waiting_for_approval":
            waiting = [
                step
                for step in view["steps"]
                if step["status"] == "waiting_for_approval" and step["approved_at"] is None
            ]
            if waiting:
                path, body = f"steps/{waiting[0]['id']}/approve", {"approved_by": by}
            else:
                risk = next(r for r in view["risks"] if r["acknowledged_at"] is None)
                path, body = f"risks/{risk['id']}/acknowledge", {"acknowledged_by": by}
            view = await self.act(pipeline_id, path, body)
        return view

    async def events(self, pipeline_id: int) -> list[dict[str, Any]]:
        answer = await self.api("GET", f"/api/events?stream=pipeline:{pipeline_id}&limit=1000")
        return list(answer["events"])

    def db(self) -> Any:
        return self.app_client.app[SERVICES].db

    def branch_file(self, branch: str, path: str) -> str:
        return git("show", f"{branch}:{path}", cwd=self.remote.bare)

    async def open_pull_request(
        self, summary: str = "Greet people by saying Hello", **fields: Any
    ) -> dict[str, Any]:
        """A backend ticket run to its open pull request through both gates, released by a
        person (`script_gated_change`, `drive`): the pipeline's view, `waiting_for_review`."""
        key = await self.ticket(summary, labels=("backend",), **fields)
        self.model.script_gated_change()
        opened = await self.drive((await self.create(key))["id"])
        assert opened["status"] == "waiting_for_review", opened.get("failure")
        assert step_of(opened, "plan")["approved_by"] == "mia"
        return opened

    async def settle_reviews(self) -> None:
        """Work what is due now: deliveries, then review batches (the review_response agent)."""
        app = self.app_client.app
        await app[DISPATCHER].drain()
        await app[REVIEW_SCHEDULER].drain()
        await app[DISPATCHER].drain()


class PullRequestWebhooks:
    """Signed deliveries about the pipeline's pull request into the real app, built from the
    real payloads in tests/fixtures/github (Codertocat/Hello-World, installation 1: our REPO and
    INSTALLATION), their `pull_request` being the one the GitHub fake holds."""

    def __init__(self, world: PipelineWorld) -> None:
        self.world = world
        self.comment_ids = itertools.count(7001)

    async def send(
        self, event: str, payload: dict[str, Any], delivery_id: str | None = None
    ) -> str:
        """Post a signed delivery and let the dispatcher work it; its delivery id."""
        delivery_id = delivery_id or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        client = self.world.app_client
        headers = github_headers(event, body, delivery_id=delivery_id)
        response = await client.post("/webhooks/github", data=body, headers=headers)
        assert response.status == 202, await response.text()
        await client.app[DISPATCHER].drain()
        return delivery_id

    def _point(self, fixture: str, number: int) -> dict[str, Any]:
        payload = load_json(fixture)
        assert payload["repository"]["full_name"] == REPO
        assert payload["installation"]["id"] == INSTALLATION
        payload["repository"]["clone_url"] = self.world.remote.url
        pull = self.world.github.pulls[(REPO, number)]
        payload["pull_request"] = copy.deepcopy(pull)
        payload["number"] = number
        return payload

    def opened(self, number: int) -> dict[str, Any]:
        return self._point("github/pull_request/opened.payload.json", number)

    def closed(self, number: int, *, merged: bool) -> dict[str, Any]:
        """The pull request closed on GitHub (the fake's copy too), merged or not."""
        pull = self.world.github.pulls[(REPO, number)]
        merged_at = self.world.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ") if merged else None
        pull.update({"state": "closed", "merged": merged, "merged_at": merged_at})
        return self._point("github/pull_request/closed.payload.json", number)

    def review_comment(self, number: int, body: str, *, path: str, line: int) -> dict[str, Any]:
        """A reviewer's diff comment, held by the GitHub fake as GitHub would hold it."""
        payload = self._point("github/pull_request_review_comment/created.payload.json", number)
        now = self.world.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        comment = payload["comment"]
        comment.update(
            {
                "id": next(self.comment_ids),
                "body": body,
                "user": REVIEWER_USER,
                "path": path,
                "line": line,
                "original_line": line,
                "commit_id": payload["pull_request"]["head"]["sha"],
                "created_at": now,
                "updated_at": now,
            }
        )
        payload["sender"] = REVIEWER_USER
        self.world.github.add_review_comment(REPO, number, comment)
        return payload


def step_of(pipeline: dict[str, Any], phase: str) -> dict[str, Any]:
    return next(step for step in pipeline["steps"] if step["phase"] == phase)
