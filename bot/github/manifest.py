"""The GitHub App manifest flow (as Probot apps offer it), but for its routes (web/setup_github.py).

1. `app.yml` becomes GitHub's manifest JSON (`build_manifest`): its name, permissions and events,
   with biagent's own URLs (homepage, webhook, redirect back to the callback).
2. The person's browser posts it to GitHub's new-app page for their account or an organisation
   (`new_app_url`), on GitHub.com or GitHub Enterprise Server (`web_url` of GITHUB_API_URL), with a
   `state` that `ManifestStates` issued: random, kept here, good once, for an hour.
3. GitHub sends the browser back with `?code=&state=`; `convert_code` exchanges the code at
   `POST /app-manifests/{code}/conversions` for the App's id, private key and webhook secret
   (GitHub lets the code work once, within an hour).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
import yaml

from bot.clock import Clock
from bot.config import Secret
from bot.github.credentials import AppCredentials
from bot.github.manners import REQUESTER
from bot.settings_readers import Refused, pem_private_key

APP_YML = Path(__file__).resolve().parents[2] / "app.yml"
CALLBACK_PATH = "/setup/github/callback"
WEBHOOK_PATH = "/webhooks/github"
STATE_TTL = timedelta(hours=1)  # GitHub's code lasts an hour too
STATES_KEPT = 64  # a page reloaded many times issues many; the oldest go first
APP_NAME_MAX = 34  # GitHub's limit on an App's name
_ACCOUNT_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class ManifestError(Exception):
    """The flow cannot go on; `message` says why in words a person can act on."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class AppRequest:
    """What the person asked for: the App's name and the organisation (None: their account)."""

    name: str
    organization: str | None = None

    @property
    def owner(self) -> str:
        return f"the organisation {self.organization}" if self.organization else "your account"


def app_request(name: str, organization: str | None) -> AppRequest:
    """The form's fields, checked; ManifestError (400) names the one that is wrong."""
    name = " ".join(name.split())
    if not name or len(name) > APP_NAME_MAX:
        raise ManifestError(f"the App's name must be 1 to {APP_NAME_MAX} characters")
    if organization is not None:
        organization = organization.strip()
        if not _ACCOUNT_LOGIN.match(organization):
            raise ManifestError(f"{organization!r} is not a GitHub organisation login")
    return AppRequest(name=name, organization=organization)


def load_app_yml(path: Path = APP_YML) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"the manifest {path} cannot be read: {error}", status=503) from None
    if not isinstance(loaded, dict):
        raise ManifestError(f"the manifest {path} is not a mapping", status=503)
    return loaded


def build_manifest(app_yml: Mapping[str, Any], *, name: str, base_url: str) -> dict[str, Any]:
    """GitHub's manifest JSON: app.yml's permissions and events, biagent's own URLs."""
    base = base_url.rstrip("/")
    return {
        "name": name,
        "url": base,
        "hook_attributes": {"url": base + WEBHOOK_PATH, "active": True},
        "redirect_url": base + CALLBACK_PATH,
        "public": bool(app_yml.get("public", False)),
        "default_permissions": dict(app_yml.get("default_permissions") or {}),
        "default_events": list(app_yml.get("default_events") or []),
    }


def web_url(api_url: str) -> str:
    """GitHub's web address for a REST base: https://api.github.com -> https://github.com,
    https://HOST/api/v3 (Enterprise Server) -> https://HOST, https://api.X.ghe.com -> https://X.ghe.com;
    anything else is taken to serve both (a test's fake)."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path.rstrip("/")
    if path.endswith("/api/v3"):
        path = path.removesuffix("/api/v3")
    elif host.startswith("api."):
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}{path}"


def new_app_url(web: str, request: AppRequest, state: str) -> str:
    """GitHub's page that registers an App from the posted manifest, for the chosen owner."""
    if request.organization:
        page = f"{web}/organizations/{quote(request.organization, safe='')}/settings/apps/new"
    else:
        page = f"{web}/settings/apps/new"
    return f"{page}?state={quote(state, safe='')}"


@dataclass(frozen=True, slots=True)
class _Issued:
    request: AppRequest
    expires_at: datetime


class ManifestStates:
    """The states handed to GitHub: each random, good once, until it expires."""

    def __init__(
        self,
        clock: Clock,
        *,
        ttl: timedelta = STATE_TTL,
        kept: int = STATES_KEPT,
        make_token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.clock, self.ttl, self.kept, self.make_token = clock, ttl, kept, make_token
        self._issued: dict[str, _Issued] = {}

    def issue(self, request: AppRequest) -> str:
        now = self.clock.now()
        self._issued = {s: i for s, i in self._issued.items() if i.expires_at > now}
        while len(self._issued) >= self.kept:
            del self._issued[next(iter(self._issued))]
        state = self.make_token()
        self._issued[state] = _Issued(request, now + self.ttl)
        return state

    def take(self, state: str) -> AppRequest | None:
        """The request the state was issued for, once; None when unknown, used or expired."""
        issued = self._issued.pop(state, None)
        if issued is None or issued.expires_at <= self.clock.now():
            return None
        return issued.request


async def convert_code(session: aiohttp.ClientSession, api_url: str, code: str) -> AppCredentials:
    """POST /app-manifests/{code}/conversions: the new App's credentials; ManifestError when
    GitHub refuses the code (400: used, expired or unknown) or cannot be reached (502)."""
    if not _CODE.match(code):
        raise ManifestError("the code GitHub sent back is missing or malformed")
    client = gidgethub.aiohttp.GitHubAPI(session, REQUESTER, base_url=api_url)
    try:
        answer = await client.post(
            "/app-manifests/{code}/conversions", url_vars={"code": code}, data={}
        )
    except gidgethub.BadRequest as error:
        raise ManifestError(
            f"GitHub refused the code ({error.status_code}: {error}): it works once and only"
            " for an hour; start again from the status page"
        ) from None
    except gidgethub.GitHubException as error:
        raise ManifestError(f"GitHub could not convert the code: {error}", status=502) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        message = f"GitHub cannot be reached at {api_url}: {error or type(error).__name__}"
        raise ManifestError(message, status=502) from None
    return _converted(answer)


def _converted(answer: Any) -> AppCredentials:
    """The conversion's answer as credentials; ManifestError (502) when it lacks what we need."""
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
        raise ManifestError("GitHub's answer to the conversion has no App id", status=502)
    try:
        private_key = pem_private_key(str(answer.get("pem") or ""))
    except Refused as refusal:
        message = f"GitHub's answer has no usable private key: {refusal}"
        raise ManifestError(message, status=502) from None
    secret = answer.get("webhook_secret")
    owner = answer.get("owner")
    return AppCredentials(
        app_id=str(answer["id"]),
        private_key=private_key,
        webhook_secret=Secret(secret) if isinstance(secret, str) and secret else None,
        slug=answer.get("slug") if isinstance(answer.get("slug"), str) else None,
        html_url=answer.get("html_url") if isinstance(answer.get("html_url"), str) else None,
        owner=owner.get("login") if isinstance(owner, dict) else None,
    )
