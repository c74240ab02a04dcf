"""Every route but /healthz, /readyz, /login and /webhooks/* refuses an anonymous request."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import AppClient, StartApp
from tests.helpers import API_TOKEN, make_settings
from web.auth import COOKIE, is_open
from web.keys import GENERATED_TOKEN, SERVICES


def concrete_path(resource: web.AbstractResource) -> str:
    info = resource.get_info()
    if "path" in info:
        return str(info["path"])
    if "formatter" in info:
        return re.sub(r"\{[^}]+\}", "1", str(info["formatter"]))
    if "prefix" in info:  # static files
        return f"{info['prefix']}/status.js"
    raise AssertionError(f"unknown resource shape {info}")


def protected_routes(app: web.Application) -> list[tuple[str, str]]:
    found = []
    for route in app.router.routes():
        path = concrete_path(route.resource) if route.resource else ""
        if route.method in ("HEAD", "OPTIONS") or is_open(path):
            continue
        found.append((route.method, path))
    return found


async def test_route_table_walk_finds_every_protected_route_refusing_anonymous(
    client: AppClient,
) -> None:
    routes = protected_routes(client.app)
    assert ("GET", "/api/deliveries") in routes
    assert ("GET", "/ws") in routes
    assert ("GET", "/") in routes
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
            response = await client.request(method, path, headers=headers)
            assert response.status == 401, f"{method} {path} answered {response.status}"


async def test_open_routes_are_only_health_readiness_login_webhooks_and_the_setup_callback(
    client: AppClient,
) -> None:
    """The setup callback is open because GitHub's redirect carries no SameSite=Strict cookie;
    it only sends the browser on to /setup/github/finish, which is not open."""
    open_paths = {
        concrete_path(route.resource)
        for route in client.app.router.routes()
        if route.resource is not None and is_open(concrete_path(route.resource))
    }
    assert all(
        path in ("/healthz", "/readyz", "/login", "/setup/github/callback")
        or path.startswith("/webhooks/")
        for path in open_paths
    )
    assert not is_open("/setup/github/finish") and not is_open("/setup/github")


async def test_bearer_token_opens_the_api(client: AppClient) -> None:
    response = await client.get("/api/deliveries", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status == 200


async def test_login_url_sets_an_http_only_cookie_that_opens_the_page(client: AppClient) -> None:
    response = await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    page = await client.get("/")
    assert page.status == 200
    assert "biagent" in await page.text()


async def test_login_with_a_wrong_token_is_refused(client: AppClient) -> None:
    response = await client.get("/login", params={"token": "nope"}, allow_redirects=False)
    assert response.status == 401


async def test_browser_without_token_gets_a_login_hint(client: AppClient) -> None:
    response = await client.get("/", headers={"Accept": "text/html"})
    assert response.status == 401
    assert "/login?token=" in await response.text()


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
async def test_cookie_websocket_from_another_origin_is_refused(
    client: AppClient, origin: str
) -> None:
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    response = await client.get(
        "/ws",
        headers={
            "Origin": origin,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status == 403


async def test_generated_token_is_stored_hashed_only(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(make_settings(tmp_path, api_token=None))
    token = client.app[GENERATED_TOKEN]
    db = client.app[SERVICES].db
    stored = [row[0] for row in await db.fetchall("SELECT value FROM meta")]
    assert token not in stored
    response = await client.get("/api/deliveries", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
async def test_cookie_write_from_another_origin_is_refused(client: AppClient, origin: str) -> None:
    """SameSite=Strict keeps the cookie from other sites, not from another port of this host."""
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    response = await client.post("/api/deliveries/1/redeliver", headers={"Origin": origin})
    assert response.status == 403


async def test_cookie_write_from_our_own_origin_passes_the_check(client: AppClient) -> None:
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    own = str(client.make_url("")).rstrip("/")
    response = await client.post("/api/deliveries/1/redeliver", headers={"Origin": own})
    assert response.status == 404  # past the check: there is no delivery 1
