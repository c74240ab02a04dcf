"""Shared test helpers: fixture loading, webhook signing, settings for a test server."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from bot.config import Secret, Settings

FIXTURES = Path(__file__).parent / "fixtures"
API_TOKEN = "test-api-token-0123456789"
WEBHOOK_SECRET = "test-webhook-secret"


def fixture_path(relative: str) -> Path:
    return FIXTURES / relative


def load_json(relative: str) -> Any:
    return json.loads(fixture_path(relative).read_text(encoding="utf-8"))


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(
    event: str, body: bytes, *, delivery_id: str | None = None, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }


# Set for the test by tests/conftest.py under BIAGENT_TEST_DATABASE=postgresql: the URL of the
# test's PostgreSQL database standing for `tmp_path`'s biagent.db (the same one each call).
default_database: Callable[[Path], str] | None = None


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'biagent.db'}"
        if default_database is None
        else default_database(tmp_path),
        "api_token": Secret(API_TOKEN),
        "github_webhook_secret": Secret(WEBHOOK_SECRET),
        "worktree_root": tmp_path / "worktrees",
    }
    values.update(overrides)
    if values["database_url"].startswith("postgres"):
        # no database file to keep the saved App beside: tmp_path, not the working directory
        values.setdefault("secrets_dir", tmp_path)
    return Settings(**values)


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


JIRA_WEBHOOK_SECRET = "test-jira-webhook-secret"


def jira_settings(tmp_path: Path, fake: Any, **overrides: Any) -> Settings:
    """Settings pointing JIRA at a protocol fake (tests/fakes/jira/), no sync at start-up."""
    values: dict[str, Any] = {
        "jira_url": fake.url,
        "jira_email": fake.email,
        "jira_api_token": Secret(fake.token),
        "jira_webhook_secret": Secret(JIRA_WEBHOOK_SECRET),
        "jira_sync_at_start": False,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def jira_headers(
    body: bytes, *, identifier: str | None = None, secret: str = JIRA_WEBHOOK_SECRET
) -> dict[str, str]:
    return {
        "X-Hub-Signature": sign(body, secret),
        "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
        "Content-Type": "application/json",
        "User-Agent": "Atlassian Webhook HTTP Client",
    }


def api_routes(
    app: web.Application, methods: set[str], *, prefix: str = "/api/"
) -> list[tuple[str, str]]:
    """(method, path template) of every route under `prefix` with one of `methods`."""
    found = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(prefix) and route.method in methods:
            found.append((route.method, path))
    return sorted(found)


def filled(path: str, *, hostile: str | None = None, value: str = "") -> str:
    """`path` with `{hostile}` as `value` and every other placeholder as a plausible id."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == hostile:
            return value
        return "AB-1" if name == "key" else "1"

    return re.sub(r"\{([^}]+)\}", one, path)


def body_structs() -> list[type[msgspec.Struct]]:
    """Every Struct a web module decodes client input into (imported by the app factory)."""
    import web.app  # noqa: F401  (imports every route module)

    def below(cls: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
        return [cls, *(found for sub in cls.__subclasses__() for found in below(sub))]

    return [cls for cls in below(msgspec.Struct) if cls.__module__.startswith("web.")]


async def page_html(client: Any, path: str, status: int = 200) -> str:
    """A status page as a logged-in browser gets it (the cookie `/login?token=` sets)."""
    await client.get("/login", params={"token": API_TOKEN}, allow_redirects=False)
    response = await client.get(path)
    assert response.status == status, path
    return str(await response.text())


def section_of(html: str, section_id: str) -> str:
    """`<section id=...>` of a page up to its end (the pages' sections do not nest)."""
    match = re.search(rf'<section id="{section_id}".*?</section>', html, flags=re.DOTALL)
    return match.group(0) if match else ""
