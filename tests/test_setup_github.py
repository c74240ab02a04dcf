"""First-run setup by the GitHub App manifest flow, through the real app and the GitHub fake.

The person's part on GitHub (confirming the posted manifest) is the fake's `register_manifest`,
which hands out the code GitHub would put in the redirect; everything else is biagent's own
routes: the status page's offer, POST /setup/github, the callback, the finish, the conversion
at the fake, the saved file, and the App in use without a restart.
"""

from __future__ import annotations

import html
import json
import logging
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.clock import ManualClock
from bot.config import Secret, Settings
from tests.conftest import AppClient, StartApp
from tests.fakes.github import FakeGitHub
from tests.helpers import auth_headers, github_headers, load_json, make_settings
from web.keys import GITHUB_CONNECTION

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://biagent.example.com"
PING = json.dumps(load_json("github/ping/payload.json")).encode()


def setup_settings(tmp_path: Path, api_url: str, **overrides: Any) -> Settings:
    """No GitHub App in the environment, no webhook secret either."""
    values: dict[str, Any] = {
        "github_webhook_secret": None,
        "github_api_url": api_url,
        "public_url": PUBLIC_URL,
    }
    return make_settings(tmp_path, **{**values, **overrides})


async def page(client: AppClient, path: str) -> str:
    response = await client.get(path, headers={**auth_headers(), "Accept": "text/html"})
    assert response.status == 200
    return await response.text()


async def begin(client: AppClient, **form: str) -> tuple[int, str, dict[str, Any], str]:
    """GET /setup/github: (status, GitHub's form action, the manifest posted, the page)."""
    response = await client.get("/setup/github", params=form, headers=auth_headers())
    text = await response.text()
    action = re.search(r'<form method="post" action="([^"]+)" class="setup" id="to-github"', text)
    manifest = re.search(r'name="manifest" value="([^"]+)"', text)
    if action is None or manifest is None:
        return response.status, "", {}, text
    return (
        response.status,
        html.unescape(action.group(1)),
        json.loads(html.unescape(manifest.group(1))),
        text,
    )


def state_of(action_url: str) -> str:
    return action_url.split("?state=", 1)[1]


async def come_back(client: AppClient, code: str, state: str) -> tuple[int, str]:
    """GitHub's redirect (no cookie: SameSite=Strict), then the bounce to /finish, logged in."""
    bounce = await client.get("/setup/github/callback", params={"code": code, "state": state})
    assert bounce.status == 200
    found = re.search(r'<a href="([^"]+)" id="finish">', await bounce.text())
    assert found is not None
    finish_url = html.unescape(found.group(1))
    finished = await client.get(finish_url, headers=auth_headers())
    return finished.status, await finished.text()


async def confirmed_on_github(
    client: AppClient, fake: FakeGitHub, name: str = "biagent"
) -> tuple[str, str]:
    """The setup begun for the person's account and confirmed on GitHub: the code and the state
    GitHub's redirect brings back."""
    status, action, manifest, _ = await begin(client, account="user", name=name)
    assert status == 200
    return fake.register_manifest(manifest), state_of(action)


async def create_through_the_flow(client: AppClient, fake: FakeGitHub) -> tuple[str, Any]:
    """The whole flow for the person's account: the finish page and the App the fake created."""
    status, text = await come_back(client, *await confirmed_on_github(client, fake, "b-acme"))
    assert status == 200, text
    (created,) = fake.created_apps.values()
    return text, created


# -- the offer and the form to GitHub --------------------------------------------------------


async def test_the_status_page_without_github_offers_to_create_the_app(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    text = await page(client, "/")
    assert 'id="setup-user"' in text and 'id="setup-organization"' in text
    assert text.count('<form method="get" action="/setup/github"') == 2
    assert "Create the GitHub App for my account" in text
    assert str(tmp_path / "github-app.json") in text


async def test_the_status_page_with_an_app_configured_offers_no_setup(
    start_app: StartApp, tmp_path: Path, app_key: tuple[str, str]
) -> None:
    settings = make_settings(tmp_path, github_app_id="4242", github_private_key=Secret(app_key[0]))
    client = await start_app(settings)
    assert 'id="setup-user"' not in await page(client, "/")


async def test_for_my_account_the_manifest_goes_to_githubs_new_app_page(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    status, action, manifest, _ = await begin(client, account="user", name="biagent-acme")
    app_yml = yaml.safe_load((ROOT / "app.yml").read_text())
    assert status == 200
    assert re.fullmatch(r"https://github\.com/settings/apps/new\?state=[A-Za-z0-9_-]{40,}", action)
    assert manifest == {
        "name": "biagent-acme",
        "url": PUBLIC_URL,
        "hook_attributes": {"url": PUBLIC_URL + "/webhooks/github", "active": True},
        "redirect_url": PUBLIC_URL + "/setup/github/callback",
        "public": False,
        "default_permissions": app_yml["default_permissions"],
        "default_events": app_yml["default_events"],
    }


async def test_the_page_to_github_may_post_its_form_there_and_only_there(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    response = await client.get(
        "/setup/github", params={"account": "user", "name": "b"}, headers=auth_headers()
    )
    policy = response.headers["Content-Security-Policy"]
    assert "form-action 'self' https://github.com;" in policy
    status_page = await client.get("/", headers=auth_headers())
    assert "form-action 'self';" in status_page.headers["Content-Security-Policy"]


async def test_for_an_organisation_on_enterprise_server_its_page_there(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://ghe.example.com/api/v3"))
    status, action, manifest, text = await begin(
        client, account="organization", organization="acme-corp", name="biagent"
    )
    assert status == 200
    assert action.startswith(
        "https://ghe.example.com/organizations/acme-corp/settings/apps/new?state="
    )
    assert manifest["hook_attributes"]["url"] == PUBLIC_URL + "/webhooks/github"
    assert "the organisation acme-corp" in text


async def test_without_a_public_url_the_manifest_names_the_address_the_browser_used(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com", public_url=None))
    assert "BIAGENT_PUBLIC_URL is not set" in await page(client, "/")
    _, _, manifest, _ = await begin(client, account="user", name="biagent")
    own = f"http://{client.server.host}:{client.server.port}"
    assert manifest["redirect_url"] == own + "/setup/github/callback"


@pytest.mark.parametrize(
    "form",
    [
        {"account": "organization", "organization": "not a login!", "name": "biagent"},
        {"account": "organization", "organization": "", "name": "biagent"},
        {"account": "user", "name": "x" * 35},
        {"account": "enterprise", "name": "biagent"},
    ],
)
async def test_a_bad_form_is_a_400_page_that_says_what_is_wrong(
    start_app: StartApp, tmp_path: Path, form: dict[str, str]
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    status, _, _, text = await begin(client, **form)
    assert status == 400
    assert 'id="setup-error"' in text


async def test_starting_the_setup_needs_the_login(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    response = await client.get("/setup/github", params={"account": "user", "name": "biagent"})
    assert response.status == 401


# -- the way back: conversion, the saved file, the App in use -----------------------------


async def test_the_callback_converts_the_code_and_links_to_the_installation_page(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    text, created = await create_through_the_flow(client, fake_github)
    assert f'href="https://github.com/apps/{created.slug}/installations/new"' in text
    assert len(fake_github.calls_to("POST", "/app-manifests/")) == 1
    assert client.app[GITHUB_CONNECTION].credentials.app_id == str(created.app_id)


async def test_the_app_is_saved_for_the_service_user_only_and_never_in_the_database_or_logs(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: FakeGitHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    await create_through_the_flow(client, fake_github)
    saved_file = tmp_path / "github-app.json"
    saved = json.loads(saved_file.read_text())
    assert stat.S_IMODE(saved_file.stat().st_mode) == 0o600
    assert "BEGIN RSA PRIVATE KEY" in saved["private_key"]
    key_line = saved["private_key"].splitlines()[5]  # a line of the key's body
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("biagent.db*"))
    for secret in (key_line, saved["webhook_secret"]):
        assert secret.encode() not in stored
        assert secret not in caplog.text
    assert [p.name for p in tmp_path.glob(".github-app.json*")] == []  # no temporary left


async def test_after_the_setup_webhooks_signed_with_the_new_secret_are_accepted(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    before = await client.post("/webhooks/github", data=PING, headers=github_headers("ping", PING))
    assert before.status == 503  # no secret yet
    _, created = await create_through_the_flow(client, fake_github)
    signed = github_headers("ping", PING, secret=created.webhook_secret)
    assert (await client.post("/webhooks/github", data=PING, headers=signed)).status == 202
    forged = github_headers("ping", PING, secret="not-the-apps-secret")
    assert (await client.post("/webhooks/github", data=PING, headers=forged)).status == 401


async def test_after_the_setup_the_app_gets_installation_tokens_without_a_restart(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    fake_github.installations[7] = {"repositories": ["octo/repo"]}
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    _, created = await create_through_the_flow(client, fake_github)
    github = client.app[GITHUB_CONNECTION].require()
    listed = await github.client(7).getitem("/installation/repositories")
    identity = await github.load_identity()
    assert listed["repositories"][0]["full_name"] == "octo/repo"
    assert identity.slug == created.slug
    assert len(fake_github.calls_to("POST", "/app/installations/7/access_tokens")) == 1
    status = await (await client.get("/readyz")).json()
    assert status["integrations"]["github"]["state"] != "off"
    assert status["integrations"]["webhooks"]["state"] == "ok"
    assert 'id="setup-user"' not in await page(client, "/")


async def test_a_restart_loads_the_saved_app(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    settings = setup_settings(tmp_path, fake_github.base_url)
    first = await start_app(settings)
    _, created = await create_through_the_flow(first, fake_github)
    await first.close()
    restarted = await start_app(settings)
    connection = restarted.app[GITHUB_CONNECTION]
    assert connection.require().app_id == str(created.app_id)
    assert connection.origin == str(tmp_path / "github-app.json")
    signed = github_headers("ping", PING, secret=created.webhook_secret)
    assert (await restarted.post("/webhooks/github", data=PING, headers=signed)).status == 202
    assert (await connection.require().installation_token(7)).token.reveal().startswith("ghs_")


async def test_the_environment_wins_over_the_saved_app(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub, app_key: tuple[str, str]
) -> None:
    settings = setup_settings(tmp_path, fake_github.base_url)
    first = await start_app(settings)
    await create_through_the_flow(first, fake_github)
    await first.close()
    from_environment = setup_settings(
        tmp_path,
        fake_github.base_url,
        github_app_id="4242",
        github_private_key=Secret(app_key[0]),
        github_webhook_secret=Secret("the-environments-secret"),
    )
    restarted = await start_app(from_environment)
    connection = restarted.app[GITHUB_CONNECTION]
    assert connection.require().app_id == "4242"
    assert connection.webhook_secret == Secret("the-environments-secret")


async def test_a_saved_file_others_may_read_is_not_used_nor_replaced(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    settings = setup_settings(tmp_path, fake_github.base_url)
    first = await start_app(settings)
    await create_through_the_flow(first, fake_github)
    await first.close()
    (tmp_path / "github-app.json").chmod(0o644)
    restarted = await start_app(settings)
    assert restarted.app[GITHUB_CONNECTION].app is None
    assert "chmod 600" in await page(restarted, "/")
    status, _, _, text = await begin(restarted, account="user", name="biagent")
    assert status == 409 and "chmod 600" in text


# -- refusals: a page that says what happened, never a 500 ------------------------------------


async def test_an_unknown_state_is_a_400_page(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    code = fake_github.register_manifest({"name": "biagent"})
    status, text = await come_back(client, code, "made-up-state")
    assert status == 400 and "unknown, used or expired" in text
    assert fake_github.calls_to("POST", "/app-manifests/") == []


async def test_a_state_works_once(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    code, state = await confirmed_on_github(client, fake_github)
    assert (await come_back(client, code, state))[0] == 200
    status, text = await come_back(client, code, state)
    assert status == 400 and "unknown, used or expired" in text
    assert len(fake_github.calls_to("POST", "/app-manifests/")) == 1


async def test_a_state_expires_after_an_hour(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub, manual_clock: ManualClock
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url), clock=manual_clock)
    code, state = await confirmed_on_github(client, fake_github)
    await manual_clock.advance(3601)
    status, text = await come_back(client, code, state)
    assert status == 400 and "unknown, used or expired" in text


async def test_a_callback_without_code_or_state_is_a_400_page(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(setup_settings(tmp_path, "https://api.github.com"))
    response = await client.get("/setup/github/callback", params={"state": "abc"})
    assert response.status == 400
    assert "no code or state" in await response.text()


async def test_finishing_needs_the_login(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    code, state = await confirmed_on_github(client, fake_github)
    response = await client.get("/setup/github/finish", params={"code": code, "state": state})
    assert response.status == 401
    assert fake_github.calls_to("POST", "/app-manifests/") == []


async def test_a_code_github_refuses_is_a_clear_page_and_nothing_is_saved(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    _, action, _, _ = await begin(client, account="user", name="biagent")
    status, text = await come_back(client, "expired-or-never-issued", state_of(action))
    assert status == 400 and "GitHub refused the code (404" in text
    assert client.app[GITHUB_CONNECTION].app is None
    assert not (tmp_path / "github-app.json").exists()


async def test_github_failing_the_conversion_is_a_502_page(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    code, state = await confirmed_on_github(client, fake_github)
    fake_github.script_failure("POST", r"/app-manifests/.*", status=502, message="Server Error")
    status, text = await come_back(client, code, state)
    assert status == 502 and "GitHub could not convert the code" in text


async def test_github_out_of_reach_is_a_502_page(start_app: StartApp, tmp_path: Path) -> None:
    client = await start_app(setup_settings(tmp_path, "http://127.0.0.1:9"))
    _, action, _, _ = await begin(client, account="user", name="biagent")
    status, text = await come_back(client, "a-code", state_of(action))
    assert status == 502 and "GitHub cannot be reached" in text


async def test_a_second_app_is_not_converted_once_one_is_in_use(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    first = await confirmed_on_github(client, fake_github, "one")
    second = await confirmed_on_github(client, fake_github, "two")
    assert (await come_back(client, *first))[0] == 200
    status, text = await come_back(client, *second)
    assert status == 409 and "already uses the GitHub App" in text
    assert len(fake_github.calls_to("POST", "/app-manifests/")) == 1


async def test_a_file_that_cannot_be_written_leaves_the_app_in_use_and_says_how_to_keep_it(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    client = await start_app(setup_settings(tmp_path, fake_github.base_url))
    code, state = await confirmed_on_github(client, fake_github)
    (tmp_path / "github-app.json").mkdir()  # in the way of the rename, whoever runs the test
    status, text = await come_back(client, code, state)
    assert status == 200
    assert "could not be saved" in text and "GITHUB_PRIVATE_KEY_PATH" in text
    assert client.app[GITHUB_CONNECTION].origin == "the manifest flow, not saved"
    assert [p.name for p in tmp_path.glob(".github-app.json*")] == []


async def test_a_webhook_secret_in_the_environment_gives_way_to_the_new_apps_with_a_warning(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    environment_secret = Secret("an-old-secret")
    settings = setup_settings(
        tmp_path, fake_github.base_url, github_webhook_secret=environment_secret
    )
    client = await start_app(settings)
    text, created = await create_through_the_flow(client, fake_github)
    assert "GITHUB_WEBHOOK_SECRET is set in the environment" in text
    signed = github_headers("ping", PING, secret=created.webhook_secret)
    assert (await client.post("/webhooks/github", data=PING, headers=signed)).status == 202
