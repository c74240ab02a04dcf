"""Browser hardening through the real server: the login cookie's Secure flag behind a proxy, the
Origin check on cookie-authenticated changes (CSRF), and the headers every page is sent with."""

from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path

import pytest

from tests.conftest import AppClient, StartApp
from tests.helpers import API_TOKEN, auth_headers, github_headers, load_json, make_settings
from web.auth import COOKIE
from web.forwarded import forwarded_origin
from web.keys import DISPATCHER

LOOPBACK = (ip_network("127.0.0.0/8"),)


async def log_in(client: AppClient, **headers: str) -> bool:
    """Log in through /login; whether the cookie it set is marked Secure."""
    response = await client.get(
        "/login", params={"token": API_TOKEN}, headers=headers, allow_redirects=False
    )
    assert response.status == 303
    return bool(response.cookies[COOKIE]["secure"])


def own_origin(client: AppClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def a_stored_delivery(client: AppClient) -> int:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    await client.app[DISPATCHER].drain()
    listed = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    return int(listed["deliveries"][0]["id"])


async def test_x_forwarded_proto_https_from_a_trusted_proxy_makes_the_cookie_secure(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, trusted_proxies=LOOPBACK))
    assert await log_in(client, **{"X-Forwarded-Proto": "https"})


async def test_forwarded_proto_https_from_a_trusted_proxy_makes_the_cookie_secure(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, trusted_proxies=LOOPBACK))
    assert await log_in(client, Forwarded="for=203.0.113.9;proto=https;host=biagent.example")


async def test_x_forwarded_proto_https_from_an_untrusted_peer_is_ignored(
    start_app: StartApp, tmp_path: Path
) -> None:
    other_proxy = (ip_network("10.0.0.0/8"),)
    for proxies in ((), other_proxy):
        client = await start_app(make_settings(tmp_path, trusted_proxies=proxies))
        assert not await log_in(client, **{"X-Forwarded-Proto": "https"})
        await client.close()


async def test_plain_http_login_cookie_is_not_secure(client: AppClient) -> None:
    assert not await log_in(client)


async def test_cookie_post_without_origin_is_refused(client: AppClient) -> None:
    delivery_pk = await a_stored_delivery(client)
    await log_in(client)
    response = await client.post(f"/api/deliveries/{delivery_pk}/redeliver")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
async def test_cookie_post_from_a_foreign_origin_is_refused(client: AppClient, origin: str) -> None:
    delivery_pk = await a_stored_delivery(client)
    await log_in(client)
    response = await client.post(
        f"/api/deliveries/{delivery_pk}/redeliver", headers={"Origin": origin}
    )
    assert response.status == 403


async def test_cookie_post_from_our_own_origin_passes(client: AppClient) -> None:
    delivery_pk = await a_stored_delivery(client)
    await log_in(client)
    response = await client.post(
        f"/api/deliveries/{delivery_pk}/redeliver", headers={"Origin": own_origin(client)}
    )
    assert response.status == 202


async def test_cookie_get_needs_no_origin(client: AppClient) -> None:
    await log_in(client)
    assert (await client.get("/api/deliveries")).status == 200


async def test_bearer_post_without_origin_is_unaffected(client: AppClient) -> None:
    delivery_pk = await a_stored_delivery(client)
    response = await client.post(
        f"/api/deliveries/{delivery_pk}/redeliver",
        headers={**auth_headers(), "Origin": "http://evil.example"},
    )
    assert response.status == 202
    await client.app[DISPATCHER].drain()
    response = await client.post(f"/api/deliveries/{delivery_pk}/redeliver", headers=auth_headers())
    assert response.status == 202


async def test_origin_behind_a_trusted_proxy_is_the_forwarded_host(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, trusted_proxies=LOOPBACK))
    delivery_pk = await a_stored_delivery(client)
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "biagent.example"}
    response = await client.post(
        f"/api/deliveries/{delivery_pk}/redeliver",
        headers={**proxied, "Origin": "https://biagent.example", "Cookie": f"{COOKIE}={API_TOKEN}"},
    )
    assert response.status == 202


async def test_the_status_page_is_sent_with_the_browser_hardening_headers(
    client: AppClient,
) -> None:
    response = await client.get("/", headers=auth_headers())
    assert response.status == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_the_login_hint_page_is_sent_with_the_headers_too(client: AppClient) -> None:
    response = await client.get("/", headers={"Accept": "text/html"})
    assert response.status == 401
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in response.headers


def test_the_status_template_has_no_inline_script_or_style() -> None:
    template = (Path(__file__).parent.parent / "web/templates/status.html").read_text()
    assert "<style" not in template and " style=" not in template
    assert template.count("<script") == template.count('<script src="/static/')


def test_forwarded_headers_that_are_not_well_formed_are_ignored() -> None:
    assert forwarded_origin({"X-Forwarded-Proto": "gopher"}, ()) == (None, None)
    assert forwarded_origin({"X-Forwarded-Host": "a b/c"}, ()) == (None, None)
    assert forwarded_origin({"X-Forwarded-Proto": "http, HTTPS"}, ()) == ("https", None)
    assert forwarded_origin({}, ({"proto": "https", "host": "[::1]:8443"},)) == (
        "https",
        "[::1]:8443",
    )


async def test_a_cookie_websocket_through_a_trusted_proxy_opens_from_the_forwarded_origin(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(make_settings(tmp_path, trusted_proxies=LOOPBACK))
    proxied = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "biagent.example",
        "Cookie": f"{COOKIE}={API_TOKEN}",
    }
    async with client.ws_connect(
        "/ws", headers={**proxied, "Origin": "https://biagent.example"}
    ) as ws:
        assert (await ws.receive_json())["control"] == "hello"
    refused = await client.get(
        "/ws",
        headers={
            **proxied,
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert refused.status == 403
