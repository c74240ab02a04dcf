"""The GitHub fake's manifest flow (first-run setup), on the fake's own state (github.py).

A browser posting a manifest to the fake's new-app page (`/settings/apps/new`,
`/organizations/{org}/settings/apps/new`) gets a form asking to create the App; confirming it
sends the browser back to the manifest's `redirect_url` with a code and its state, from
GitHub's own page as GitHub does (`FakeGitHub.register_manifest` gives the code without a
browser); `POST /app-manifests/{code}/conversions` converts a code once, within the hour, into a
new App with a freshly generated key (PKCS#1, as GitHub hands it out), whose JWTs the fake then
accepts like the main app's.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github_common import api_error, github_time

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub


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


class ManifestFlow:
    """GitHub's pages that register an App from a manifest, and the code's conversion."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.post("/app-manifests/{code}/conversions")(self.convert_manifest)
        routes.post("/settings/apps/new")(self.new_app_page)  # GitHub's web side, not REST
        routes.post("/organizations/{org}/settings/apps/new")(self.new_app_page)
        routes.post("/settings/apps/new/confirm")(self.confirm_new_app)

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
        code = self.github.register_manifest(
            manifest, owner=organization or "octocat", organization=bool(organization)
        )
        query = urlencode({"code": code, "state": str(form["state"])})
        raise web.HTTPFound(f"{manifest['redirect_url']}?{query}")

    async def convert_manifest(self, request: web.Request) -> web.Response:
        """POST /app-manifests/{code}/conversions: once per code, within the hour, no auth."""
        registered = self.github.manifest_codes.pop(request.match_info["code"], None)
        if registered is None or self.github.now() - registered.created_at > timedelta(hours=1):
            raise api_error(404, "Not Found")
        private_pem, public_pem = generate_app_key(traditional=True)
        app_id = next(self.github.ids)
        slug = re.sub(r"[^a-z0-9]+", "-", registered.manifest["name"].lower()).strip("-")
        created = CreatedApp(app_id, slug, registered.manifest["name"], public_pem,
                             secrets.token_hex(20), registered.manifest)  # fmt: skip
        self.github.created_apps[app_id] = created
        return web.json_response(
            conversion_answer(created, private_pem, registered, self.github.now()), status=201
        )
