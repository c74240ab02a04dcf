"""A protocol fake of the GitHub REST API on loopback, reached through the real gidgethub client.

It checks the app JWT (RS256, signed by the test app's key, `iss` = the app id, not expired),
issues installation access tokens that expire on the fake's clock, refuses expired or unknown
tokens with 401 as GitHub does, and records every call. State lives in plain dicts on the
instance so tests can seed and inspect it; the endpoints live in one module per part, each
given this fake (its state) and adding its routes to `FakeGitHub.routes()`:

- github_reviews.py: review response (issue 5): pulls, review comments and replies, reviews and
  their comments, issue comments, reactions, check runs, collaborator permission, contents. A
  pull request can follow a local bare repository (`follow_git`): its head sha is then what the
  branch holds there; a repository served from one (`serve_repository`) gives the pull requests
  opened through the API its clone URL and their head sha, and they follow it. One strictness
  beyond GitHub: a reply addressed to a comment that is itself a reply is refused (422), so a
  test proves biagent addresses the thread's root;
- github_graphql.py: review threads over GraphQL and requested reviewers (issue 14);
- github_manifest.py: the manifest flow of first-run setup (`register_manifest` gives a code
  without a browser);
- github_common.py: GitHub's example answers (tests/fixtures/github-api), its time format, its
  errors and its paging (`per_page`/`page` and a `Link` header), shared by the parts.

`script_failure()` makes the next matching calls answer a 403 secondary rate limit (with
`Retry-After`), a 5xx, or anything else.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.github_common import API_EXAMPLES, api_error, api_example, github_time
from tests.fakes.github_graphql import ThreadsAndReviewers
from tests.fakes.github_manifest import (
    CreatedApp,
    ManifestCode,
    ManifestFlow,
    conversion_answer,
    generate_app_key,
)
from tests.fakes.github_reviews import ReviewEndpoints

__all__ = [  # the names tests import from here, wherever they now live
    "API_EXAMPLES",
    "Call",
    "CreatedApp",
    "FakeGitHub",
    "IssuedToken",
    "ManifestCode",
    "ScriptedFailure",
    "api_example",
    "conversion_answer",
    "generate_app_key",
    "github_time",
]


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    installation_id: int | None
    at: float = 0.0  # time.monotonic() when it arrived (bench/review_latency.py)


@dataclass
class IssuedToken:
    installation_id: int
    expires_at: datetime


@dataclass
class ScriptedFailure:
    method: str
    path_pattern: str
    status: int
    headers: dict[str, str]
    message: str
    times: int
    after_handling: bool = False  # the request takes effect, then the answer is the failure
    body: Any = None  # answered as JSON instead of {"message": ...} (a GraphQL `errors` list)
    html: str | None = None  # answered as text/html instead (a proxy's 502 page)


def _failure_response(failure: ScriptedFailure) -> web.Response:
    if failure.html is not None:
        return web.Response(
            text=failure.html,
            status=failure.status,
            headers=failure.headers,
            content_type="text/html",
        )
    body = failure.body
    if body is None:
        body = {"message": failure.message, "documentation_url": "https://docs.github.com/rest"}
    return web.json_response(body, status=failure.status, headers=failure.headers)


@dataclass
class FakeGitHub:
    app_id: int
    public_key_pem: str
    slug: str = "biagent-test"
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    token_ttl: timedelta = timedelta(hours=1)
    calls: list[Call] = field(default_factory=list)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(9_000_000))
    server: TestServer | None = None
    # review response state, keyed as GitHub keys it
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    opened_pulls: list[dict[str, Any]] = field(default_factory=list)  # POST /pulls, in order
    review_comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    issue_comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reviews: dict[int, dict[str, Any]] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    check_run_history: dict[int, list[tuple[str, str | None]]] = field(default_factory=dict)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)
    contents: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[ScriptedFailure] = field(default_factory=list)
    git_remotes: dict[tuple[str, int], Path] = field(default_factory=dict)
    repository_remotes: dict[str, Path] = field(default_factory=dict)  # full name -> bare
    # the manifest flow: codes GitHub would hand the browser, and the Apps converted from them
    manifest_codes: dict[str, ManifestCode] = field(default_factory=dict)
    created_apps: dict[int, CreatedApp] = field(default_factory=dict)
    # review threads over GraphQL and requested reviewers (github_graphql.py)
    threads: ThreadsAndReviewers = field(init=False)
    reviews_part: ReviewEndpoints = field(init=False)
    manifest: ManifestFlow = field(init=False)

    def __post_init__(self) -> None:
        self.threads = ThreadsAndReviewers(self)
        self.reviews_part = ReviewEndpoints(self)
        self.manifest = ManifestFlow(self)

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.get("/app")(self.get_app)
        self.manifest.add_routes(routes)
        routes.post("/app/installations/{installation_id}/access_tokens")(self.create_token)
        routes.get("/repos/{owner}/{repo}/installation")(self.get_repo_installation)
        routes.get("/installation/repositories")(self.list_installation_repositories)
        self.reviews_part.add_routes(routes)
        self.threads.add_routes(routes)
        return routes

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record])
        app.router.add_routes(self.routes())
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self.base_url

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    # -- auth --------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            body = dict(await request.post())  # GitHub's web pages (the manifest flow)
        elif request.can_read_body:
            body = await request.json()
        installation_id = None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "token":
            issued = self.tokens.get(value)
            installation_id = issued.installation_id if issued else None
        self.calls.append(
            Call(
                request.method,
                request.path,
                dict(request.query),
                body,
                installation_id,
                time.monotonic(),
            )
        )
        for failure in self.failures:
            if (
                failure.times > 0
                and failure.method == request.method
                and re.fullmatch(failure.path_pattern, request.path)
            ):
                failure.times -= 1
                if failure.after_handling:
                    await handler(request)  # e.g. a 502 from GitHub's edge after the write
                return _failure_response(failure)
        return await handler(request)

    def check_jwt(self, request: web.Request) -> dict[str, Any]:
        """The claims of a valid app JWT: this app's, or one created by a manifest conversion."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise api_error(401, "A JSON web token could not be decoded")
        try:
            unverified = jwt.decode(value, options={"verify_signature": False})
            public_key = self._public_key_of(unverified.get("iss"))
            claims = jwt.decode(
                value,
                public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=120,
            )
        except jwt.PyJWTError as error:
            raise api_error(401, f"A JSON web token could not be decoded: {error}") from None
        if claims["exp"] - claims["iat"] > 660:
            raise api_error(401, "Expiration time' claim ('exp') is too far in the future")
        return claims

    def _public_key_of(self, issuer: Any) -> str:
        if str(issuer) == str(self.app_id):
            return self.public_key_pem
        for created in self.created_apps.values():
            if str(issuer) == str(created.app_id):
                return created.public_key_pem
        raise api_error(401, "Integration not found")

    def check_token(self, request: web.Request) -> int:
        """The installation id of a valid `Authorization: token ...`; 401 otherwise."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        issued = self.tokens.get(value) if scheme.lower() in ("token", "bearer") else None
        if issued is None or issued.expires_at <= self.now():
            raise api_error(401, "Bad credentials")
        return issued.installation_id

    # -- endpoints ---------------------------------------------------------------------

    async def get_app(self, request: web.Request) -> web.Response:
        claims = self.check_jwt(request)
        created = self.created_apps.get(int(claims["iss"]))
        if created is not None:
            return web.json_response(
                {"id": created.app_id, "slug": created.slug, "name": created.name}
            )
        return web.json_response(
            {"id": self.app_id, "slug": self.slug, "name": self.slug.replace("-", " ").title()}
        )

    # -- the manifest flow ---------------------------------------------------------------

    def register_manifest(
        self, manifest: dict[str, Any], *, owner: str = "octocat", organization: bool = False
    ) -> str:
        """What GitHub does when a person confirms a posted manifest: a code for the redirect."""
        code = secrets.token_hex(10)
        self.manifest_codes[code] = ManifestCode(manifest, owner, organization, self.now())
        return code

    async def create_token(self, request: web.Request) -> web.Response:
        self.check_jwt(request)
        installation_id = int(request.match_info["installation_id"])
        token = "ghs_" + secrets.token_hex(18)
        expires_at = self.now() + self.token_ttl
        self.tokens[token] = IssuedToken(installation_id, expires_at)
        return web.json_response(
            {
                "token": token,
                "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": {"pull_requests": "write", "contents": "write"},
                "repository_selection": "selected",
            },
            status=201,
        )

    async def get_repo_installation(self, request: web.Request) -> web.Response:
        self.check_jwt(request)
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        for installation_id, installation in self.installations.items():
            if full_name in installation.get("repositories", ()):
                return web.json_response({"id": installation_id, "app_id": self.app_id})
        raise api_error(404, "Not Found")

    async def list_installation_repositories(self, request: web.Request) -> web.Response:
        installation_id = self.check_token(request)
        names = self.installations.get(installation_id, {}).get("repositories", [])
        repositories = [
            {"id": index + 1, "full_name": name, "name": name.split("/")[1], "private": False}
            for index, name in enumerate(names)
        ]
        return web.json_response({"total_count": len(repositories), "repositories": repositories})

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    # -- scripting -----------------------------------------------------------------------

    def script_failure(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str | None = None,
        after_handling: bool = False,
        body: Any = None,
        html: str | None = None,
    ) -> None:
        """The next `times` calls matching (method, full-match regex) answer `status`; with
        `after_handling`, each takes effect first (GitHub wrote it, then answered an error).
        `body` is answered as JSON instead of GitHub's message, `html` as an HTML page."""
        default = {
            403: "You have exceeded a secondary rate limit. Please wait a few minutes before you"
            " try again.",
            429: "You have exceeded a secondary rate limit.",
        }.get(status, "Server Error")
        self.failures.append(
            ScriptedFailure(
                method,
                path_pattern,
                status,
                headers or {},
                message or default,
                times,
                after_handling,
                body,
                html,
            )
        )

    # -- seeding (tests) ----------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        return {"login": f"{self.slug}[bot]", "id": 41898282, "type": "Bot", "site_admin": False}

    def add_pull_request(self, repository: str, pull_request: dict[str, Any]) -> None:
        self.pulls[(repository, int(pull_request["number"]))] = copy.deepcopy(pull_request)

    def move_head(self, repository: str, number: int, sha: str) -> None:
        self.pulls[(repository, number)]["head"]["sha"] = sha

    def follow_git(self, repository: str, number: int, bare: Path) -> None:
        """Serve the pull request's head sha from a local bare repository standing for the
        remote (its `head.ref` branch), as GitHub follows pushes to the head branch."""
        self.git_remotes[(repository, number)] = bare

    def serve_repository(self, repository: str, bare: Path) -> None:
        """Pull requests opened through the API in `repository` live in this local bare
        repository standing for the remote: their `head.repo` and `base.repo` carry its
        `file://` clone URL, and their head sha is what the head branch holds there."""
        self.repository_remotes[repository] = bare

    def add_review_comment(self, repository: str, number: int, comment: dict[str, Any]) -> None:
        self.review_comments[int(comment["id"])] = {
            **copy.deepcopy(comment),
            "_repo": repository,
            "_number": number,
        }

    def add_review(
        self, repository: str, number: int, review: dict[str, Any], comment_ids: list[int]
    ) -> None:
        self.reviews[int(review["id"])] = {
            **copy.deepcopy(review),
            "_repo": repository,
            "_number": number,
            "_comment_ids": list(comment_ids),
        }
        self.threads.review_submitted(
            repository, number, (review.get("user") or {}).get("login", "")
        )

    def set_permission(self, repository: str, login: str, permission: str) -> None:
        self.permissions[(repository, login.lower())] = permission

    def set_file(self, repository: str, path: str, text: str) -> None:
        self.contents[(repository, path)] = text

    def replies_to(self, root_id: int) -> list[dict[str, Any]]:
        return [c for c in self.review_comments.values() if c.get("in_reply_to_id") == root_id]

    def comments_on(self, repository: str, number: int) -> list[dict[str, Any]]:
        return [
            c
            for c in self.issue_comments.values()
            if c["_repo"] == repository and c["_number"] == number
        ]

    # -- review response endpoints -------------------------------------------------------
