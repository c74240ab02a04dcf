"""A review scenario for end-to-end tests: the real app, the GitHub fake, a scripted engine.

Webhook bodies are the real payloads in tests/fixtures/github, pointed at one pull request
(Codertocat/Hello-World#2, installation 1, from the pull_request_review_comment fixture): the
review fixtures come from another repository, so their `repository`, `pull_request` and
`installation` are replaced by this one's, and comment ids, bodies and authors are set per test.
The fake is seeded with the same objects, as GitHub would hold them.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from bot.clock import ManualClock
from bot.config import Secret, Settings
from tests.conftest import AppClient, StartApp
from tests.fakes.github import FakeGitHub
from tests.fakes.review_engine import ScriptedEngine
from tests.helpers import auth_headers, github_headers, load_json, make_settings
from web.keys import DISPATCHER, REVIEW_SCHEDULER, SERVICES

REPO = "Codertocat/Hello-World"
NUMBER = 2
INSTALLATION = 1
REVIEWER = "Codertocat"
BOT = "biagent-test[bot]"


def review_settings(tmp_path: Path, fake: FakeGitHub, app_key: tuple[str, str]) -> Settings:
    return make_settings(
        tmp_path,
        github_app_id=str(fake.app_id),
        github_private_key=Secret(app_key[0]),
        github_api_url=fake.base_url,
        github_write_spacing_seconds=0.0,
    )


class Scenario:
    def __init__(
        self,
        *,
        start_app: StartApp,
        settings: Settings,
        fake: FakeGitHub,
        clock: ManualClock,
        engine: ScriptedEngine,
        opened_by_biagent: bool = True,
    ) -> None:
        self.start_app = start_app
        self.settings = settings
        self.fake = fake
        self.clock = clock
        self.engine = engine
        self.client: AppClient | None = None
        # past 2^31, as GitHub's review comment ids are since 2025 (GraphQL's `databaseId` is null)
        self.comment_ids = itertools.count(2**31 + 7001)
        base = load_json("github/pull_request_review_comment/created.payload.json")
        self.repository = base["repository"]
        self.installation = base["installation"]
        self.pull_request = copy.deepcopy(base["pull_request"])
        if opened_by_biagent:
            self.pull_request["user"] = {**self.fake.bot_user(), "login": BOT}
        self.pull_request["head"]["repo"]["clone_url"] = "file:///srv/git/hello-world.git"
        fake.add_pull_request(REPO, self.pull_request)
        fake.set_permission(REPO, REVIEWER, "admin")

    # -- the app ------------------------------------------------------------------------

    async def start(self) -> AppClient:
        self.client = await self.start_app(
            self.settings, clock=self.clock, review_engine=self.engine
        )
        services = self.client.app[SERVICES]
        assert services.github is not None
        for _ in range(500):
            if services.github.identity is not None:
                break
            await asyncio.sleep(0.01)
        assert services.github.identity is not None, "GET /app did not answer"
        return self.client

    async def restart(self) -> AppClient:
        assert self.client is not None
        await self.client.close()
        return await self.start()

    @property
    def db(self) -> Any:
        assert self.client is not None
        return self.client.app[SERVICES].db

    async def send(
        self, event: str, payload: dict[str, Any], *, delivery_id: str | None = None
    ) -> str:
        """Post a signed delivery and let the dispatcher work it."""
        assert self.client is not None
        delivery_id = delivery_id or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        response = await self.client.post(
            "/webhooks/github",
            data=body,
            headers=github_headers(event, body, delivery_id=delivery_id),
        )
        assert response.status == 202, await response.text()
        await self.client.app[DISPATCHER].drain()
        return delivery_id

    async def settle(self) -> None:
        """Work everything that is due now (deliveries, then review batches)."""
        assert self.client is not None
        await self.client.app[DISPATCHER].drain()
        await self.client.app[REVIEW_SCHEDULER].drain()
        await self.client.app[DISPATCHER].drain()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.settle()

    async def pump(self, seconds: float, *, step: float = 5.0) -> None:
        """Move the clock in steps, letting the app run in between: for work that waits on the
        clock itself (the scheduler's retries), which `settle()` would wait for forever."""
        moved = 0.0
        while moved < seconds:
            await self.clock.advance(step)
            for _ in range(5):
                await asyncio.sleep(0.01)
            moved += step

    async def work_with_retries(self, seconds: float) -> None:
        """Let the quiet window close, then the due batch run with the scheduler's own retries
        for `seconds` of the clock."""
        await self.clock.advance(31)
        await self.pump(seconds)

    async def api(self, path: str) -> Any:
        assert self.client is not None
        response = await self.client.get(path, headers=auth_headers())
        assert response.status == 200, await response.text()
        return await response.json()

    # -- payloads -----------------------------------------------------------------------

    def _point(self, payload: dict[str, Any]) -> dict[str, Any]:
        payload["repository"] = copy.deepcopy(self.repository)
        payload["installation"] = copy.deepcopy(self.installation)
        if "pull_request" in payload:
            payload["pull_request"] = copy.deepcopy(self.pull_request)
        return payload

    def user(self, login: str, *, bot: bool = False) -> dict[str, Any]:
        return {"login": login, "id": abs(hash(login)) % 10**8, "type": "Bot" if bot else "User"}

    def opened(self) -> dict[str, Any]:
        return self._point(load_json("github/pull_request/opened.payload.json"))

    def closed(self) -> dict[str, Any]:
        payload = self._point(load_json("github/pull_request/closed.payload.json"))
        payload["pull_request"].update({"state": "closed", "merged": False})
        return payload

    def review_comment(
        self,
        body: str,
        *,
        comment_id: int | None = None,
        action: str = "created",
        author: str = REVIEWER,
        bot: bool = False,
        in_reply_to: int | None = None,
        review_id: int = 900,
        line: int = 10,
        fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`fields`: more of the comment's own (path, commit_id, start_line, side...)."""
        payload = self._point(
            load_json(f"github/pull_request_review_comment/{action}.payload.json")
        )
        comment = payload["comment"]
        comment.update(
            {
                "id": comment_id or next(self.comment_ids),
                "body": body,
                "user": self.user(author, bot=bot),
                "pull_request_review_id": review_id,
                "line": line,
                "original_line": line,
                "created_at": self.now(),
                "updated_at": self.now(),
            }
        )
        if in_reply_to is not None:
            comment["in_reply_to_id"] = in_reply_to
        comment.update(fields or {})
        self.fake.add_review_comment(REPO, NUMBER, comment)
        payload["sender"] = self.user(author, bot=bot)
        return payload

    def review(
        self,
        state: str,
        *,
        review_id: int = 900,
        comment_ids: list[int] | None = None,
        body: str = "",
        author: str = REVIEWER,
        action: str = "submitted",
    ) -> dict[str, Any]:
        source = {
            "approved": "github/pull_request_review/submitted.approved.json",
            "changes_requested": "github/pull_request_review/submitted.changes_requested.json",
            "commented": "github/pull_request_review/submitted.payload.json",
            "dismissed": "github/pull_request_review/dismissed.payload.json",
        }[state]
        payload = self._point(load_json(source))
        payload["action"] = action
        review = payload["review"]
        review.update(
            {
                "id": review_id,
                "body": body,
                "user": self.user(author),
                "submitted_at": self.now(),
                "commit_id": self.pull_request["head"]["sha"],
            }
        )
        self.fake.add_review(REPO, NUMBER, review, comment_ids or [])
        payload["sender"] = self.user(author)
        return payload

    def issue_comment(
        self, body: str, *, author: str = REVIEWER, comment_id: int | None = None
    ) -> dict[str, Any]:
        payload = load_json("github/issue_comment/created.on-pull-request.json")
        payload["repository"] = copy.deepcopy(self.repository)
        payload["installation"] = copy.deepcopy(self.installation)
        payload["issue"]["number"] = NUMBER
        comment = payload["comment"]
        comment.update(
            {
                "id": comment_id or next(self.comment_ids),
                "body": body,
                "user": self.user(author),
                "created_at": self.now(),
                "updated_at": self.now(),
            }
        )
        self.fake.issue_comments[comment["id"]] = {**comment, "_repo": REPO, "_number": NUMBER}
        payload["sender"] = self.user(author)
        return payload

    def synchronize(self, after: str, *, sender: str) -> dict[str, Any]:
        payload = self._point(load_json("github/pull_request/synchronize.payload.json"))
        payload["after"] = after
        payload["pull_request"]["head"]["sha"] = after
        payload["sender"] = self.user(sender, bot=sender.endswith("[bot]"))
        self.fake.move_head(REPO, NUMBER, after)
        return payload

    def now(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- what GitHub saw ----------------------------------------------------------------

    def replies(self) -> list[dict[str, Any]]:
        return [
            c
            for c in self.fake.review_comments.values()
            if c.get("in_reply_to_id") and c["user"]["login"] == BOT
        ]

    def pr_comments(self) -> list[dict[str, Any]]:
        return [c for c in self.fake.comments_on(REPO, NUMBER) if c["user"]["login"] == BOT]

    def check_runs(self) -> list[dict[str, Any]]:
        return list(self.fake.check_runs.values())


def thread_event(scenario: Scenario, action: str, root_id: int, *, sender: str) -> dict[str, Any]:
    """GitHub's `pull_request_review_thread` payload for the fake's thread of `root_id`."""
    payload = load_json(f"github/pull_request_review_thread/{action}.payload.json")
    payload["repository"] = copy.deepcopy(scenario.repository)
    payload["installation"] = copy.deepcopy(scenario.installation)
    payload["pull_request"] = copy.deepcopy(scenario.pull_request)
    comment = payload["thread"]["comments"][0]
    payload["thread"]["node_id"] = scenario.fake.threads.node_id_of(root_id)
    payload["thread"]["comments"] = [
        {**comment, **scenario.fake.review_comments[c["id"]], "id": c["id"]}
        for c in sorted(scenario.fake.review_comments.values(), key=lambda c: c["id"])
        if c["id"] == root_id or c.get("in_reply_to_id") == root_id
    ]
    for item in payload["thread"]["comments"]:
        for private in ("_repo", "_number"):
            item.pop(private, None)
    payload["sender"] = scenario.user(sender, bot=sender.endswith("[bot]"))
    return payload


async def three_comments_and_review(scenario: Scenario) -> list[int]:
    """Three diff comments five seconds apart, then the changes-requested review naming them."""
    ids = []
    for text in ("Rename this variable.", "Add a test for the empty case.", "Why a list here?"):
        payload = scenario.review_comment(text)
        ids.append(payload["comment"]["id"])
        await scenario.send("pull_request_review_comment", payload)
        await scenario.advance(5)
    await scenario.send(
        "pull_request_review",
        scenario.review("changes_requested", comment_ids=ids, body=""),
    )
    await scenario.settle()
    return ids
