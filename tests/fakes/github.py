"""A protocol fake of the GitHub REST API on loopback, reached through the real gidgethub client.

It checks the app JWT (RS256, signed by the test app's key, `iss` = the app id, not expired),
issues installation access tokens that expire on the fake's clock, refuses expired or unknown
tokens with 401 as GitHub does, and records every call. Later features add their endpoints to
`FakeGitHub.routes()`; state lives in plain dicts on the instance so tests can seed and inspect it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def generate_app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
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


@dataclass
class IssuedToken:
    installation_id: int
    expires_at: datetime


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

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.get("/app")(self.get_app)
        routes.post("/app/installations/{installation_id}/access_tokens")(self.create_token)
        routes.get("/repos/{owner}/{repo}/installation")(self.get_repo_installation)
        routes.get("/installation/repositories")(self.list_installation_repositories)
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
        body = await request.json() if request.can_read_body else None
        installation_id = None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "token":
            issued = self.tokens.get(value)
            installation_id = issued.installation_id if issued else None
        self.calls.append(
            Call(request.method, request.path, dict(request.query), body, installation_id)
        )
        return await handler(request)

    def check_jwt(self, request: web.Request) -> dict[str, Any]:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise _error(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                value,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=120,
            )
        except jwt.PyJWTError as error:
            raise _error(401, f"A JSON web token could not be decoded: {error}") from None
        if str(claims["iss"]) != str(self.app_id):
            raise _error(401, "Integration not found")
        if claims["exp"] - claims["iat"] > 660:
            raise _error(401, "Expiration time' claim ('exp') is too far in the future")
        return claims

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
        self.check_jwt(request)
        return web.json_response(
            {"id": self.app_id, "slug": self.slug, "name": self.slug.replace("-", " ").title()}
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


def _error(status: int, message: str) -> web.HTTPException:
    exception = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}.get(
        status, web.HTTPBadRequest
    )
    return exception(
        text=f'{{"message": "{message}", "documentation_url": "https://docs.github.com/rest"}}',
        content_type="application/json",
    )
