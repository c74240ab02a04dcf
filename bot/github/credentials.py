"""The GitHub App's credentials: from the environment, or from the file the manifest flow saved.

The manifest flow (web/setup_github.py) gets the App's id, private key and webhook secret from
GitHub once, and GitHub never shows the key again, so they are kept in one JSON file,
`github-app.json` in BIAGENT_SECRETS_DIR (by default the database's directory): written through a
temporary file created with mode 0600 (readable by the service user only) and renamed into
place, never in the database, never logged. At start-up `starting_credentials` reads it when the
environment does not name the App, and the environment wins field by field: GITHUB_APP_ID with
its key replaces the saved App, GITHUB_WEBHOOK_SECRET the saved secret. A saved file that others
may read, or that cannot be used, is reported and not used (and not overwritten by a new App).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import Secret, Settings
from bot.settings_readers import Refused, pem_private_key
from storage.database import database_file

CREDENTIALS_FILE = "github-app.json"


class CredentialsError(Exception):
    """The saved credentials cannot be used; the message says why and what to do, in one line."""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """What biagent needs to act as the App, and what to show about it (no secret in repr)."""

    app_id: str
    private_key: Secret
    webhook_secret: Secret | None
    slug: str | None = None
    html_url: str | None = None
    owner: str | None = None

    @property
    def installation_url(self) -> str | None:
        """Where a person installs the App on their repositories."""
        return f"{self.html_url.rstrip('/')}/installations/new" if self.html_url else None


@dataclass(frozen=True, slots=True)
class StartingCredentials:
    """What the GitHub part starts with: the App (if any), the webhook secret, where they came
    from, and the saved file's problem when it exists but was not used."""

    app: AppCredentials | None
    webhook_secret: Secret | None
    origin: str | None = None
    problem: str | None = None

    @property
    def warnings(self) -> list[str]:
        """What start-up logs: a saved file not used, a saved secret the environment replaces."""
        found = [f"the saved credentials are not used: {self.problem}"] if self.problem else []
        saved_secret = self.app.webhook_secret if self.app else None
        if saved_secret is not None and saved_secret != self.webhook_secret:
            found.append(
                "GITHUB_WEBHOOK_SECRET replaces the saved App's webhook secret (the environment"
                " wins): deliveries GitHub signs with the saved one are refused"
            )
        return found


def credentials_path(settings: Settings) -> Path:
    """Where the manifest flow saves the App: BIAGENT_SECRETS_DIR, else beside the SQLite
    database (on PostgreSQL: the working directory)."""
    directory = settings.secrets_dir
    if directory is None:
        database = database_file(settings.database_url)
        directory = Path() if database is None else database.parent
    return directory / CREDENTIALS_FILE


def save_credentials(path: Path, credentials: AppCredentials, *, saved_at: datetime) -> None:
    """Write the file readable by this user only: created 0600 under a temporary name, synced,
    then renamed over `path`, so a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {
        "app_id": credentials.app_id,
        "slug": credentials.slug,
        "html_url": credentials.html_url,
        "owner": credentials.owner,
        "saved_at": saved_at.isoformat(),
        "private_key": credentials.private_key.reveal(),
        "webhook_secret": (
            credentials.webhook_secret.reveal() if credentials.webhook_secret else None
        ),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            json.dump(record, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_credentials(path: Path) -> AppCredentials | None:
    """The saved App, None when there is no file; CredentialsError when it may not be used."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CredentialsError(f"{path}: cannot be read ({error.strerror})") from None
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path} may be read by others (mode {stat.S_IMODE(status.st_mode):o}):"
            f" run chmod 600 {path}, then restart"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CredentialsError(f"{path}: not readable as the saved App ({error})") from None
    return _credentials_of(path, record)


def _credentials_of(path: Path, record: Any) -> AppCredentials:
    if not isinstance(record, dict):
        raise CredentialsError(f"{path}: not the saved App (a JSON object is expected)")
    app_id, key, secret = (
        record.get("app_id"),
        record.get("private_key"),
        record.get("webhook_secret"),
    )
    if not isinstance(app_id, str) or not app_id.isdigit():
        raise CredentialsError(f"{path}: app_id is missing or not a number")
    if not isinstance(key, str):
        raise CredentialsError(f"{path}: private_key is missing")
    try:
        private_key = pem_private_key(key)
    except Refused as refusal:
        raise CredentialsError(f"{path}: private_key: {refusal}") from None
    return AppCredentials(
        app_id=app_id,
        private_key=private_key,
        webhook_secret=Secret(secret) if isinstance(secret, str) and secret else None,
        slug=_text(record.get("slug")),
        html_url=_text(record.get("html_url")),
        owner=_text(record.get("owner")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def starting_credentials(settings: Settings, path: Path) -> StartingCredentials:
    """The environment's App and secret, each taken from the saved file when unset there."""
    environment_secret = settings.github_webhook_secret
    if settings.github_app_id is not None and settings.github_private_key is not None:
        environment_app = AppCredentials(
            app_id=settings.github_app_id,
            private_key=settings.github_private_key,
            webhook_secret=environment_secret,
        )
        return StartingCredentials(environment_app, environment_secret, "the environment")
    try:
        saved = load_credentials(path)
    except CredentialsError as error:
        return StartingCredentials(None, environment_secret, problem=str(error))
    if saved is None:
        return StartingCredentials(None, environment_secret)
    return StartingCredentials(saved, environment_secret or saved.webhook_secret, str(path))
