"""First-run setup of the GitHub App by the manifest flow: the service behind web/setup_github.py.

`begin` checks that an App may be created now (none configured, no unusable saved file in the
way, a directory the file can be written to), issues a state and says where the browser posts
the manifest. `finish` takes the state back (once, unexpired), has GitHub convert the code,
saves the credentials (bot/github/credentials.py: mode 0600, never the database) and connects
the App (bot/github/connection.py), so biagent uses it at once. Two callbacks at the same time
are worked one after the other: the second finds the App configured and stops before
converting its code. Every refusal is a `ManifestError` with a status and a sentence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.github.connection import GitHubConnection
from bot.github.credentials import AppCredentials, save_credentials
from bot.github.manifest import (
    APP_YML,
    AppRequest,
    ManifestError,
    ManifestStates,
    build_manifest,
    convert_code,
    load_app_yml,
    new_app_url,
    web_url,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToGitHub:
    """Where the browser posts the manifest (GitHub's new-app page, with the state)."""

    action_url: str
    manifest: dict[str, Any]
    github_origin: str
    request: AppRequest

    @property
    def manifest_json(self) -> str:
        return json.dumps(self.manifest, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Created:
    credentials: AppCredentials
    request: AppRequest
    saved_in: Path
    warnings: tuple[str, ...] = ()


class ManifestSetup:
    def __init__(
        self,
        connection: GitHubConnection,
        path: Path,
        clock: Clock,
        *,
        saved_problem: str | None = None,
        environment_secret: bool = False,
        app_yml: Path = APP_YML,
    ) -> None:
        self.connection = connection
        self.path = path
        self.clock = clock
        self.saved_problem = saved_problem
        self.environment_secret = environment_secret
        self.app_yml = app_yml
        self.states = ManifestStates(clock)
        self._finishing = asyncio.Lock()

    @property
    def github_web(self) -> str:
        return web_url(self.connection.api_url)

    def unavailable(self) -> str | None:
        """Why no App may be created now, or None."""
        if self.connection.credentials is not None:
            return (
                f"biagent already uses the GitHub App {self.connection.credentials.app_id}"
                f" (from {self.connection.origin})"
            )
        if self.saved_problem is not None:
            return (
                f"the saved GitHub App is not used: {self.saved_problem}."
                " Fix that file (or move it away) and restart before creating another App"
            )
        return self._directory_problem()

    def _directory_problem(self) -> str | None:
        if self.path.exists():
            return f"{self.path} exists already: move it away and restart to create another App"
        directory = self.path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not os.access(directory, os.W_OK | os.X_OK):
            return (
                f"{directory} is not writable by this service, so the App's key could not be"
                " saved: set BIAGENT_SECRETS_DIR to a directory it may write"
            )
        return None

    def begin(self, request: AppRequest, *, base_url: str) -> ToGitHub:
        """A fresh state and the manifest to post to GitHub's new-app page."""
        blocked = self.unavailable()
        if blocked is not None:
            raise ManifestError(blocked, status=409)
        manifest = build_manifest(load_app_yml(self.app_yml), name=request.name, base_url=base_url)
        state = self.states.issue(request)
        web = self.github_web
        return ToGitHub(new_app_url(web, request, state), manifest, web, request)

    async def finish(self, *, code: str, state: str) -> Created:
        """Convert GitHub's code into the App, keep it, and start using it."""
        request = self.states.take(state)
        if request is None:
            raise ManifestError(
                "this setup link is unknown, used or expired (a setup lasts an hour and finishes"
                " once): start again from the status page"
            )
        async with self._finishing:
            if self.connection.credentials is not None:
                raise ManifestError(
                    f"{self.unavailable()}; the App just created on GitHub is not used, delete"
                    " it in its settings on GitHub",
                    status=409,
                )
            try:
                credentials = await convert_code(
                    self.connection.session, self.connection.api_url, code
                )
            except ManifestError as error:
                log.warning("GitHub App setup for %s stopped: %s", request.owner, error.message)
                raise
            warnings = self._keep(credentials)
            saved = f"saved in {self.path}" if self.path.is_file() else "not saved"
            self.connection.connect(
                credentials,
                webhook_secret=credentials.webhook_secret,
                origin=f"the manifest flow, {saved}",
            )
        log.info("GitHub App %s (%s) created for %s", credentials.app_id, credentials.slug,
                 request.owner)  # fmt: skip
        return Created(credentials, request, self.path, warnings)

    def _keep(self, credentials: AppCredentials) -> tuple[str, ...]:
        """Save the credentials; what the person must know when something is off."""
        warnings = []
        try:
            save_credentials(self.path, credentials, saved_at=self.clock.now())
        except OSError as error:
            log.error("GitHub App %s: not saved in %s: %s", credentials.app_id, self.path,
                      error.strerror)  # fmt: skip
            warnings.append(
                f"The App's credentials could not be saved in {self.path} ({error.strerror}):"
                " biagent uses the App until it stops. To keep it, generate a private key in"
                " the App's settings on GitHub and set GITHUB_APP_ID, GITHUB_PRIVATE_KEY_PATH"
                " and GITHUB_WEBHOOK_SECRET."
            )
        if credentials.webhook_secret is None:
            warnings.append(
                "GitHub gave no webhook secret, so webhooks are refused: set one in the App's"
                " settings on GitHub and in GITHUB_WEBHOOK_SECRET."
            )
        elif self.environment_secret:
            warnings.append(
                "GITHUB_WEBHOOK_SECRET is set in the environment: biagent uses the new App's"
                " secret now, but at the next start the environment's wins and GitHub's"
                " deliveries would be refused. Unset it."
            )
        return tuple(warnings)
