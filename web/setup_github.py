"""First-run setup of the GitHub App from the status page (the manifest flow, bot/github/setup.py).

While no App is configured the status page shows `offer` as two forms (for the person's account,
for an organisation). They lead here:

- `GET /setup/github?account=user|organization&organization=&name=` (behind the login): issues
  a state and answers a page whose form posts app.yml's manifest to GitHub's new-app page
  (GitHub.com, or the Enterprise Server of GITHUB_API_URL); that page's Content-Security-Policy
  lets its form go to GitHub. A GET, not a POST: it changes nothing a person would notice (a
  state kept for an hour), and the pages' `Referrer-Policy: no-referrer` makes a browser send
  `Origin: null` with a form POST, which the login's Origin check refuses. A site that is not
  ours cannot start it either, as the SameSite=Strict cookie does not go with its navigation.
- `GET /setup/github/callback?code=&state=`: where GitHub sends the browser back. It is open,
  because the login cookie is `SameSite=Strict` and a browser does not send it on a navigation
  that GitHub started; it only bounces the browser (a meta refresh, a navigation of our own) to
- `GET /setup/github/finish?code=&state=` (behind the login): the state taken back (once,
  unexpired), the code converted, the credentials saved and used at once. The page links to the
  App's installation page.

Every refusal is a page that says what went wrong and what to do (400 for a bad or used state,
409 when an App is configured already, 502 when GitHub cannot convert), never a 500. The code
and the state travel in query strings, which the access log never writes.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from bot.github.manifest import (
    APP_NAME_MAX,
    WEBHOOK_PATH,
    ManifestError,
    app_request,
    load_app_yml,
)
from bot.github.setup import ManifestSetup
from web.headers import CONTENT_SECURITY_POLICY
from web.keys import GITHUB_SETUP, SETTINGS

routes = web.RouteTableDef()

TEMPLATE = "setup_github.html"
BOUNCE = "setup_github_bounce.html"
_QUERY_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def _setup(request: web.Request) -> ManifestSetup:
    return request.app[GITHUB_SETUP]


def base_url(request: web.Request) -> str:
    """Where GitHub and browsers reach biagent: BIAGENT_PUBLIC_URL, else how this browser did."""
    public_url = request.app[SETTINGS].public_url
    return public_url.rstrip("/") if public_url else f"{request.scheme}://{request.host}"


def offer(request: web.Request) -> dict[str, Any] | None:
    """What the status page's setup block shows; None once the App is configured."""
    setup = _setup(request)
    if setup.connection.credentials is not None:
        return None
    try:
        default_name = str(load_app_yml(setup.app_yml).get("name") or "biagent")
    except ManifestError:
        default_name = "biagent"
    return {
        "unavailable": setup.unavailable(),
        "github": setup.github_web,
        "default_name": default_name[:APP_NAME_MAX],
        "name_max": APP_NAME_MAX,
        "hook_url": base_url(request) + WEBHOOK_PATH,
        "public_url_set": request.app[SETTINGS].public_url is not None,
        "saved_in": str(setup.path),
    }


def _page(request: web.Request, status: int = 200, **shown: Any) -> web.Response:
    return aiohttp_jinja2.render_template(TEMPLATE, request, shown, status=status)


def _refused(request: web.Request, error: ManifestError) -> web.Response:
    return _page(request, error.status, page="refused", message=error.message)


@routes.get("/setup/github")
async def begin(request: web.Request) -> web.Response:
    form = request.query
    account, name = form.get("account", ""), form.get("name", "")
    organization = form.get("organization", "") if account == "organization" else None
    try:
        if account not in ("user", "organization"):
            raise ManifestError("choose your account or an organisation for the App")
        to_github = _setup(request).begin(
            app_request(name, organization), base_url=base_url(request)
        )
    except ManifestError as error:
        return _refused(request, error)
    response = _page(
        request,
        page="to_github",
        action_url=to_github.action_url,
        manifest_json=to_github.manifest_json,
        manifest_shown=json.dumps(to_github.manifest, indent=2),
        owner=to_github.request.owner,
        github=to_github.github_origin,
    )
    # The form posts to GitHub: this page alone may send one there (a redirect on its way too),
    # and says where it comes from (GitHub sees our URLs in the manifest anyway).
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {to_github.github_origin}"
    )
    response.headers["Referrer-Policy"] = "origin"
    return response


def _code_and_state(request: web.Request) -> tuple[str, str]:
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if not (_QUERY_VALUE.match(code) and _QUERY_VALUE.match(state)):
        raise ManifestError(
            "GitHub's answer has no code or state: start again from the status page"
        )
    return code, state


@routes.get("/setup/github/callback")
async def callback(request: web.Request) -> web.Response:
    try:
        code, state = _code_and_state(request)
    except ManifestError as error:
        return _refused(request, error)
    finish_url = "/setup/github/finish?" + urlencode({"code": code, "state": state})
    return aiohttp_jinja2.render_template(BOUNCE, request, {"finish_url": finish_url})


@routes.get("/setup/github/finish")
async def finish(request: web.Request) -> web.Response:
    try:
        code, state = _code_and_state(request)
        created = await _setup(request).finish(code=code, state=state)
    except ManifestError as error:
        return _refused(request, error)
    credentials = created.credentials
    return _page(
        request,
        page="created",
        app_id=credentials.app_id,
        name=credentials.slug or created.request.name,
        app_url=credentials.html_url,
        install_url=credentials.installation_url,
        owner=credentials.owner or created.request.owner,
        saved_in=str(created.saved_in),
        warnings=created.warnings,
    )
