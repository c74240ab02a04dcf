"""A protocol fake of the GitHub REST API on loopback, reached through the real gidgethub client.

It checks the app JWT (RS256, signed by the test app's key, `iss` = the app id, not expired),
issues installation access tokens that expire on the fake's clock, refuses expired or unknown
tokens with 401 as GitHub does, and records every call. Later features add their endpoints to
`FakeGitHub.routes()`; state lives in plain dicts on the instance so tests can seed and inspect it.

Review response (issue 5) adds pulls, review comments and replies, reviews and their comments,
issue comments, reactions, check runs (created, updated, and listed for a commit by `check_name`
and `filter`, each with its `external_id`), collaborator permission and contents. A pull request can
follow a local bare repository (`follow_git`): its head sha is then what the branch holds there;
a repository served from one (`serve_repository`) gives the pull requests opened through the
API its clone URL and their head sha, and they follow it. Review threads over GraphQL and
requested reviewers (issue 14) are github_graphql.py's, on the same state.
Answers are built from GitHub's own examples in tests/fixtures/github-api (same keys, our
values). Lists paginate with `per_page`/`page` and a `Link` header, as GitHub does.
`script_failure()` makes the next matching calls answer a 403 secondary rate limit (with
`Retry-After`), a 5xx, or anything else. One strictness beyond GitHub: a reply addressed to a
comment that is itself a reply is refused (422), so a test proves biagent addresses the
thread's root.

The manifest flow (first-run setup): a browser posting a manifest to the fake's new-app page
(`/settings/apps/new`, `/organizations/{org}/settings/apps/new`) gets a form asking to create the
App; confirming it sends the browser back to the manifest's `redirect_url` with a code and its
state, from GitHub's own page as GitHub does (`register_manifest` gives the code without a
browser); `POST /app-manifests/{code}/conversions`
converts a code once, within the hour, into a new App with a freshly generated key (PKCS#1, as
GitHub hands it out), whose JWTs the fake then accepts like the main app's.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import html
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github_graphql import ThreadsAndReviewers


def generate_app_key(*, traditional: bool = False) -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM). `traditional`:
    the private key as GitHub hands it out (`BEGIN RSA PRIVATE KEY`, PKCS#1), else PKCS#8."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


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


API_EXAMPLES = Path(__file__).parent.parent / "fixtures" / "github-api"


def api_example(name: str) -> Any:
    """GitHub's example response `name` (tests/fixtures/github-api), a fresh copy each time."""
    return json.loads((API_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def github_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ManifestCode:
    """A manifest a person confirmed on GitHub, waiting for its code to be converted."""

    manifest: dict[str, Any]
    owner: str
    organization: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedApp:
    """An App the fake created from a manifest: its JWTs are accepted like the main app's."""

    app_id: int
    slug: str
    name: str
    public_key_pem: str
    webhook_secret: str
    manifest: dict[str, Any]


def conversion_answer(
    created: CreatedApp, private_pem: str, registered: ManifestCode, now: datetime
) -> dict[str, Any]:
    """The conversion's 201 body, shaped as GitHub's `integration-from-manifest` (the REST
    reference's example), with our values: the pem is the one copy of the private key."""
    owner_id = 1 + sum(registered.owner.encode())
    return {
        "id": created.app_id,
        "slug": created.slug,
        "node_id": base64.b64encode(f"04:Integration{created.app_id}".encode()).decode(),
        "client_id": f"Iv23li{secrets.token_hex(5)}",
        "owner": {
            "login": registered.owner,
            "id": owner_id,
            "type": "Organization" if registered.organization else "User",
            "html_url": f"https://github.com/{registered.owner}",
            "site_admin": False,
        },
        "name": created.name,
        "description": None,
        "external_url": created.manifest.get("url"),
        "html_url": f"https://github.com/apps/{created.slug}",
        "created_at": github_time(now),
        "updated_at": github_time(now),
        "permissions": created.manifest.get("default_permissions", {}),
        "events": created.manifest.get("default_events", []),
        "installations_count": 0,
        "client_secret": secrets.token_hex(20),
        "webhook_secret": created.webhook_secret,
        "pem": private_pem,
    }


@dataclass
class ScriptedFailure:
    method: str
    path_pattern: str
    status: int
    headers: dict[str, str]
    message: str
    times: int
    after_handling: bool = False  # the request takes effect, then the answer is the failure


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

    def __post_init__(self) -> None:
        self.threads = ThreadsAndReviewers(self)

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.get("/app")(self.get_app)
        routes.post("/app-manifests/{code}/conversions")(self.convert_manifest)
        routes.post("/settings/apps/new")(self.new_app_page)  # GitHub's web side, not REST
        routes.post("/organizations/{org}/settings/apps/new")(self.new_app_page)
        routes.post("/settings/apps/new/confirm")(self.confirm_new_app)
        routes.post("/app/installations/{installation_id}/access_tokens")(self.create_token)
        routes.get("/repos/{owner}/{repo}/installation")(self.get_repo_installation)
        routes.get("/installation/repositories")(self.list_installation_repositories)
        repo = "/repos/{owner}/{repo}"
        routes.get(repo + "/pulls")(self.list_pulls)
        routes.post(repo + "/pulls")(self.create_pull)
        routes.get(repo + "/pulls/{number:\\d+}")(self.get_pull)
        routes.get(repo + "/pulls/{number:\\d+}/comments")(self.list_pull_review_comments)
        routes.post(repo + "/pulls/{number:\\d+}/comments/{comment_id:\\d+}/replies")(
            self.create_reply
        )
        routes.get(repo + "/pulls/comments/{comment_id:\\d+}")(self.get_review_comment)
        routes.post(repo + "/pulls/comments/{comment_id:\\d+}/reactions")(
            self.create_review_comment_reaction
        )
        routes.get(repo + "/pulls/{number:\\d+}/reviews")(self.list_reviews)
        routes.get(repo + "/pulls/{number:\\d+}/reviews/{review_id:\\d+}")(self.get_review)
        routes.get(repo + "/pulls/{number:\\d+}/reviews/{review_id:\\d+}/comments")(
            self.list_review_comments_for_review
        )
        routes.post(repo + "/pulls/{number:\\d+}/reviews")(self.create_review)
        routes.get(repo + "/issues/{number:\\d+}/comments")(self.list_issue_comments)
        routes.post(repo + "/issues/{number:\\d+}/comments")(self.create_issue_comment)
        routes.post(repo + "/issues/comments/{comment_id:\\d+}/reactions")(
            self.create_issue_comment_reaction
        )
        routes.post(repo + "/check-runs")(self.create_check_run)
        routes.patch(repo + "/check-runs/{check_run_id:\\d+}")(self.update_check_run)
        routes.get(repo + "/commits/{ref}/check-runs")(self.list_check_runs_for_ref)
        routes.get(repo + "/collaborators/{user}/permission")(self.get_permission)
        routes.get(repo + "/contents/{path:.+}")(self.get_contents)
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
                return web.json_response(
                    {
                        "message": failure.message,
                        "documentation_url": "https://docs.github.com/rest",
                    },
                    status=failure.status,
                    headers=failure.headers,
                )
        return await handler(request)

    def check_jwt(self, request: web.Request) -> dict[str, Any]:
        """The claims of a valid app JWT: this app's, or one created by a manifest conversion."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise _error(401, "A JSON web token could not be decoded")
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
            raise _error(401, f"A JSON web token could not be decoded: {error}") from None
        if claims["exp"] - claims["iat"] > 660:
            raise _error(401, "Expiration time' claim ('exp') is too far in the future")
        return claims

    def _public_key_of(self, issuer: Any) -> str:
        if str(issuer) == str(self.app_id):
            return self.public_key_pem
        for created in self.created_apps.values():
            if str(issuer) == str(created.app_id):
                return created.public_key_pem
        raise _error(401, "Integration not found")

    def check_token(self, request: web.Request) -> int:
        """The installation id of a valid `Authorization: token ...`; 401 otherwise."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        issued = self.tokens.get(value) if scheme.lower() in ("token", "bearer") else None
        if issued is None or issued.expires_at <= self.now():
            raise _error(401, "Bad credentials")
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

    async def new_app_page(self, request: web.Request) -> web.Response:
        """The page a browser posts the manifest to: GitHub's own form asking the person to
        create the App, which posts back to GitHub (so GitHub's redirect is GitHub's own)."""
        form = await request.post()
        manifest = json.loads(str(form["manifest"]))
        fields = {
            "manifest": json.dumps(manifest),
            "state": request.query.get("state", ""),
            "organization": request.match_info.get("org", ""),
        }
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in fields.items()
        )
        return web.Response(
            content_type="text/html",
            text=f"<!doctype html><title>Create GitHub App</title>"
            f'<form method="post" action="/settings/apps/new/confirm">{hidden}'
            f'<button id="create">Create {html.escape(manifest["name"])}</button></form>',
        )

    async def confirm_new_app(self, request: web.Request) -> web.Response:
        """The person confirmed: back to the manifest's redirect_url with a code and the state."""
        form = await request.post()
        manifest, organization = json.loads(str(form["manifest"])), str(form["organization"])
        code = self.register_manifest(
            manifest, owner=organization or "octocat", organization=bool(organization)
        )
        query = urlencode({"code": code, "state": str(form["state"])})
        raise web.HTTPFound(f"{manifest['redirect_url']}?{query}")

    async def convert_manifest(self, request: web.Request) -> web.Response:
        """POST /app-manifests/{code}/conversions: once per code, within the hour, no auth."""
        registered = self.manifest_codes.pop(request.match_info["code"], None)
        if registered is None or self.now() - registered.created_at > timedelta(hours=1):
            raise _error(404, "Not Found")
        private_pem, public_pem = generate_app_key(traditional=True)
        app_id = next(self.ids)
        slug = re.sub(r"[^a-z0-9]+", "-", registered.manifest["name"].lower()).strip("-")
        created = CreatedApp(app_id, slug, registered.manifest["name"], public_pem,
                             secrets.token_hex(20), registered.manifest)  # fmt: skip
        self.created_apps[app_id] = created
        return web.json_response(
            conversion_answer(created, private_pem, registered, self.now()), status=201
        )

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
        raise _error(404, "Not Found")

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
    ) -> None:
        """The next `times` calls matching (method, full-match regex) answer `status`; with
        `after_handling`, each takes effect first (GitHub wrote it, then answered an error)."""
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

    @staticmethod
    def _repo(request: web.Request) -> str:
        return f"{request.match_info['owner']}/{request.match_info['repo']}"

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in item.items() if not key.startswith("_")}

    def _page(
        self, request: web.Request, items: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The page `page`/`per_page` asks for, and the Link header to the next one."""
        per_page = min(int(request.query.get("per_page", 30)), 100)
        page = int(request.query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            next_url = request.url.update_query({"page": page + 1, "per_page": per_page})
            headers["Link"] = f'<{next_url}>; rel="next"'
        return [self._public(item) for item in chunk], headers

    def _paginate(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        chunk, headers = self._page(request, items)
        return web.json_response(chunk, headers=headers)

    def _paginate_key(
        self, request: web.Request, key: str, items: list[dict[str, Any]]
    ) -> web.Response:
        """A page of a list GitHub wraps in an object: `{"total_count": n, key: [...]}`."""
        chunk, headers = self._page(request, items)
        return web.json_response(
            {"total_count": len(items), key: chunk},
            headers=headers,
        )

    def _pull(self, request: web.Request) -> dict[str, Any]:
        pull = self.pulls.get((self._repo(request), int(request.match_info["number"])))
        if pull is None:
            raise _error(404, "Not Found")
        return pull

    async def list_pulls(self, request: web.Request) -> web.Response:
        """GET /repos/{o}/{r}/pulls: `state` (open, closed, all) and `head` (owner:branch)."""
        self.check_token(request)
        repository = self._repo(request)
        state = request.query.get("state", "open")
        head = request.query.get("head")
        found = [
            pull
            for (name, _), pull in sorted(self.pulls.items())
            if name == repository
            and (state == "all" or pull.get("state", "open") == state)
            and (head is None or f"{pull['head'].get('label', '')}" == head)
        ]
        return self._paginate(request, found)

    async def create_pull(self, request: web.Request) -> web.Response:
        """POST /repos/{o}/{r}/pulls, as the installation's bot; 422 for a second open PR of
        the same head, as GitHub answers."""
        self.check_token(request)
        repository = self._repo(request)
        body = await request.json()
        owner = repository.split("/", 1)[0]
        label = f"{owner}:{body['head']}"
        for (name, _), pull in self.pulls.items():
            same_head = pull["head"].get("label") == label
            if name == repository and same_head and pull["state"] == "open":
                raise _error(422, f"A pull request already exists for {label}.")
        number = 1 + max((n for (name, n) in self.pulls if name == repository), default=0)
        html = f"https://github.com/{repository}/pull/{number}"
        repo = self._repository_json(repository)
        head_sha = base_sha = None
        if repository in self.repository_remotes:
            head_sha = await _branch_sha(self.repository_remotes[repository], body["head"])
            base_sha = await _branch_sha(self.repository_remotes[repository], body["base"])
            if not head_sha:  # GitHub's answer to a head branch that was never pushed
                raise _error(422, "Validation Failed: head is invalid")
            self.git_remotes[(repository, number)] = self.repository_remotes[repository]
        pull = {
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "draft": bool(body.get("draft", False)),
            "html_url": html,
            "url": f"{self.base_url}/repos/{repository}/pulls/{number}",
            "user": self.bot_user(),
            "head": {"ref": body["head"], "label": label, "sha": head_sha, "repo": repo},
            "base": {
                "ref": body["base"],
                "label": f"{owner}:{body['base']}",
                "sha": base_sha,
                "repo": copy.deepcopy(repo),
            },
            "merged": False,
        }
        self.pulls[(repository, number)] = pull
        self.opened_pulls.append(pull)
        return web.json_response(self._public(pull), status=201)

    def _repository_json(self, repository: str) -> dict[str, Any] | None:
        """The repository as a pull request names it (GitHub's example, our values), with the
        clone URL of the bare repository serving it; None when none does."""
        bare = self.repository_remotes.get(repository)
        if bare is None:
            return None
        repo = api_example("pulls-get")["base"]["repo"]
        owner, name = repository.split("/", 1)
        repo.update(
            {"full_name": repository, "name": name, "clone_url": f"file://{bare}",
             "default_branch": "main"}
        )  # fmt: skip
        repo["owner"]["login"] = owner
        return dict(repo)

    async def get_pull(self, request: web.Request) -> web.Response:
        self.check_token(request)
        pull = self._pull(request)
        bare = self.git_remotes.get((self._repo(request), int(request.match_info["number"])))
        if bare is not None:
            pull["head"]["sha"] = await _branch_sha(bare, pull["head"]["ref"])
        return web.json_response(pull)

    async def list_pull_review_comments(self, request: web.Request) -> web.Response:
        self.check_token(request)
        repository, number = self._repo(request), int(request.match_info["number"])
        found = [
            c
            for c in sorted(self.review_comments.values(), key=lambda c: c["id"])
            if c["_repo"] == repository and c["_number"] == number
        ]
        return self._paginate(request, found)

    async def get_review_comment(self, request: web.Request) -> web.Response:
        self.check_token(request)
        comment = self.review_comments.get(int(request.match_info["comment_id"]))
        if comment is None or comment["_repo"] != self._repo(request):
            raise _error(404, "Not Found")
        return web.json_response(self._public(comment))

    async def create_reply(self, request: web.Request) -> web.Response:
        self.check_token(request)
        repository, number = self._repo(request), int(request.match_info["number"])
        target = self.review_comments.get(int(request.match_info["comment_id"]))
        if target is None or target["_repo"] != repository or target["_number"] != number:
            raise _error(404, "Not Found")
        if target.get("in_reply_to_id"):
            raise _error(422, "in_reply_to_id: a reply must address the thread's first comment")
        body = await request.json()
        reply = api_example("pulls-create-reply-for-review-comment")
        comment_id = next(self.ids)
        now = github_time(self.now())
        reply.update(
            {
                "id": comment_id,
                "body": body["body"],
                "in_reply_to_id": target["id"],
                "path": target.get("path"),
                "line": target.get("line"),
                "diff_hunk": target.get("diff_hunk"),
                "commit_id": target.get("commit_id"),
                "user": self.bot_user(),
                "created_at": now,
                "updated_at": now,
                "author_association": "NONE",
                "pull_request_review_id": next(self.ids),
                "url": f"{self.base_url}/repos/{repository}/pulls/comments/{comment_id}",
            }
        )
        self.review_comments[comment_id] = {**reply, "_repo": repository, "_number": number}
        return web.json_response(reply, status=201)

    async def list_reviews(self, request: web.Request) -> web.Response:
        self.check_token(request)
        repository, number = self._repo(request), int(request.match_info["number"])
        found = [
            r
            for r in sorted(self.reviews.values(), key=lambda r: r["id"])
            if r["_repo"] == repository and r["_number"] == number
        ]
        return self._paginate(request, found)

    async def get_review(self, request: web.Request) -> web.Response:
        self.check_token(request)
        review = self.reviews.get(int(request.match_info["review_id"]))
        if review is None or review["_repo"] != self._repo(request):
            raise _error(404, "Not Found")
        # REST spells the state in capitals (APPROVED); webhook payloads in lower case.
        return web.json_response(
            {**self._public(review), "state": str(review.get("state", "")).upper()}
        )

    async def list_review_comments_for_review(self, request: web.Request) -> web.Response:
        self.check_token(request)
        review = self.reviews.get(int(request.match_info["review_id"]))
        if review is None or review["_repo"] != self._repo(request):
            raise _error(404, "Not Found")
        found = [
            self.review_comments[i] for i in review["_comment_ids"] if i in self.review_comments
        ]
        return self._paginate(request, found)

    async def create_review(self, request: web.Request) -> web.Response:
        self.check_token(request)
        body = await request.json()
        review = api_example("pulls-create-review")
        review.update(
            {
                "id": next(self.ids),
                "body": body.get("body"),
                "state": {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(
                    body.get("event", ""), "COMMENTED"
                ),
                "user": self.bot_user(),
            }
        )
        self.reviews[review["id"]] = {
            **review,
            "_repo": self._repo(request),
            "_number": int(request.match_info["number"]),
            "_comment_ids": [],
        }
        return web.json_response(review, status=200)

    async def list_issue_comments(self, request: web.Request) -> web.Response:
        self.check_token(request)
        found = self.comments_on(self._repo(request), int(request.match_info["number"]))
        return self._paginate(request, sorted(found, key=lambda c: c["id"]))

    async def create_issue_comment(self, request: web.Request) -> web.Response:
        self.check_token(request)
        repository, number = self._repo(request), int(request.match_info["number"])
        if (repository, number) not in self.pulls:
            raise _error(404, "Not Found")
        body = await request.json()
        comment = api_example("issues-create-comment")
        comment_id = next(self.ids)
        now = github_time(self.now())
        comment.update(
            {
                "id": comment_id,
                "body": body["body"],
                "user": self.bot_user(),
                "created_at": now,
                "updated_at": now,
                "author_association": "NONE",
                "issue_url": f"{self.base_url}/repos/{repository}/issues/{number}",
                "url": f"{self.base_url}/repos/{repository}/issues/comments/{comment_id}",
            }
        )
        self.issue_comments[comment_id] = {**comment, "_repo": repository, "_number": number}
        return web.json_response(comment, status=201)

    async def _react(self, request: web.Request, subject: str, known: bool) -> web.Response:
        self.check_token(request)
        if not known:
            raise _error(404, "Not Found")
        content = (await request.json())["content"]
        comment_id = int(request.match_info["comment_id"])
        for existing in self.reactions:
            if (existing["_subject"], existing["_comment_id"], existing["content"]) == (
                subject,
                comment_id,
                content,
            ):
                return web.json_response(self._public(existing), status=200)
        reaction = {
            "id": next(self.ids),
            "node_id": "MDg6UmVhY3Rpb24x",
            "user": self.bot_user(),
            "content": content,
            "created_at": github_time(self.now()),
            "_subject": subject,
            "_comment_id": comment_id,
        }
        self.reactions.append(reaction)
        return web.json_response(self._public(reaction), status=201)

    async def create_review_comment_reaction(self, request: web.Request) -> web.Response:
        known = int(request.match_info["comment_id"]) in self.review_comments
        return await self._react(request, "review_comment", known)

    async def create_issue_comment_reaction(self, request: web.Request) -> web.Response:
        known = int(request.match_info["comment_id"]) in self.issue_comments
        return await self._react(request, "issue_comment", known)

    async def create_check_run(self, request: web.Request) -> web.Response:
        self.check_token(request)
        body = await request.json()
        if not body.get("name") or not body.get("head_sha"):
            raise _error(422, "Validation Failed")
        check_run = api_example("checks-create.in-progress")
        check_run_id = next(self.ids)
        status = body.get("status", "queued")
        check_run.update(
            {
                "id": check_run_id,
                "name": body["name"],
                "head_sha": body["head_sha"],
                "external_id": body.get("external_id", ""),
                "status": status,
                "conclusion": body.get("conclusion"),
                "output": {**check_run["output"], **(body.get("output") or {})},
                "actions": body.get("actions", []),
                "app": {**check_run["app"], "id": self.app_id, "slug": self.slug},
                "url": f"{self.base_url}/repos/{self._repo(request)}/check-runs/{check_run_id}",
            }
        )
        self.check_runs[check_run_id] = {**check_run, "_repo": self._repo(request)}
        self.check_run_history[check_run_id] = [(status, body.get("conclusion"))]
        return web.json_response(check_run, status=201)

    async def update_check_run(self, request: web.Request) -> web.Response:
        self.check_token(request)
        check_run_id = int(request.match_info["check_run_id"])
        check_run = self.check_runs.get(check_run_id)
        if check_run is None:
            raise _error(404, "Not Found")
        body = await request.json()
        if body.get("status") == "completed" and body.get("conclusion") is None:
            raise _error(422, "conclusion is required when status is completed")
        for key in ("status", "conclusion", "started_at", "completed_at", "actions"):
            if key in body:
                check_run[key] = body[key]
        if body.get("conclusion") and "status" not in body:
            check_run["status"] = "completed"
        if "output" in body:
            check_run["output"] = {**check_run["output"], **body["output"]}
        self.check_run_history[check_run_id].append((check_run["status"], check_run["conclusion"]))
        return web.json_response(self._public(check_run))

    async def list_check_runs_for_ref(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/commits/{ref}/check-runs: the check runs on a commit (by
        sha), filtered by `check_name` and `status`; `filter=latest` (GitHub's default) keeps
        the most recent one of each name, `filter=all` every one."""
        self.check_token(request)
        repository, ref = self._repo(request), request.match_info["ref"]
        name, status = request.query.get("check_name"), request.query.get("status")
        found = [
            run
            for run in sorted(self.check_runs.values(), key=lambda run: run["id"])
            if run["_repo"] == repository
            and run["head_sha"] == ref
            and (name is None or run["name"] == name)
            and (status is None or run["status"] == status)
        ]
        if request.query.get("filter", "latest") == "latest":
            newest = {run["name"]: run for run in found}
            found = sorted(newest.values(), key=lambda run: run["id"], reverse=True)
        else:
            found.reverse()  # newest first, as GitHub lists them
        return self._paginate_key(request, "check_runs", found)

    async def get_permission(self, request: web.Request) -> web.Response:
        self.check_token(request)
        login = request.match_info["user"]
        permission = self.permissions.get((self._repo(request), login.lower()))
        if permission is None:
            raise _error(404, f"{login} is not a user")
        role = {"admin": "admin", "maintain": "maintain", "write": "write"}.get(permission, "read")
        return web.json_response(
            {
                "permission": "write" if permission == "maintain" else permission,
                "role_name": role if permission != "none" else "none",
                "user": {"login": login, "type": "User"},
            }
        )

    async def get_contents(self, request: web.Request) -> web.Response:
        self.check_token(request)
        path = request.match_info["path"]
        text = self.contents.get((self._repo(request), path))
        if text is None:
            raise _error(404, "Not Found")
        encoded = base64.encodebytes(text.encode()).decode()
        return web.json_response(
            {
                "type": "file",
                "encoding": "base64",
                "size": len(text.encode()),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": encoded,
                "sha": secrets.token_hex(20),
            }
        )


async def _branch_sha(bare: Path, branch: str) -> str:
    """What `branch` holds in a bare repository (empty when it has no such branch)."""
    git = await asyncio.create_subprocess_exec(
        "git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}",
        cwd=bare, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    head, _ = await git.communicate()
    return head.decode().strip()


def _error(status: int, message: str) -> web.HTTPException:
    exception = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        422: web.HTTPUnprocessableEntity,
    }.get(status, web.HTTPBadRequest)
    return exception(
        text=f'{{"message": "{message}", "documentation_url": "https://docs.github.com/rest"}}',
        content_type="application/json",
    )
