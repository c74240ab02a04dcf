"""The GitHub App's saved credentials (bot/github/credentials.py): written for this user only,
read back, refused when damaged, and which of them and the environment start the service."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.config import Secret
from bot.github.credentials import (
    AppCredentials,
    CredentialsError,
    credentials_path,
    load_credentials,
    save_credentials,
    starting_credentials,
)
from bot.worktrees.service import hidden_from_commands
from tests.helpers import make_settings


def saved(tmp_path: Path, key: str, secret: str | None = "whsec") -> Path:
    path = tmp_path / "secrets" / "github-app.json"
    credentials = AppCredentials("77", Secret(key), Secret(secret) if secret else None, "b")
    save_credentials(path, credentials, saved_at=ManualClock().now())
    return path


def test_saved_credentials_read_back(tmp_path: Path, app_key: tuple[str, str]) -> None:
    path = saved(tmp_path, app_key[0])
    loaded = load_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert loaded is not None and loaded.app_id == "77" and loaded.slug == "b"
    assert loaded.private_key.reveal() == app_key[0].strip()
    assert loaded.webhook_secret == Secret("whsec")
    assert "PRIVATE" not in repr(loaded)


def test_a_saved_file_with_a_damaged_key_is_refused(
    tmp_path: Path, app_key: tuple[str, str]
) -> None:
    path = saved(tmp_path, app_key[0])
    record = json.loads(path.read_text())
    lines = record["private_key"].splitlines()
    lines[5] = lines[5][::-1]  # a line of the key's body, reversed
    record["private_key"] = "\n".join(lines)
    path.write_text(json.dumps(record))
    with pytest.raises(CredentialsError, match="private_key: the PEM private key cannot be read"):
        load_credentials(path)


def test_the_environment_wins_field_by_field(tmp_path: Path, app_key: tuple[str, str]) -> None:
    settings = make_settings(tmp_path, secrets_dir=tmp_path / "secrets")
    path = saved(tmp_path, app_key[0])
    assert credentials_path(settings) == path
    starting = starting_credentials(settings, path)  # the environment sets only the secret
    assert starting.app is not None and starting.app.app_id == "77"
    assert starting.webhook_secret == settings.github_webhook_secret
    assert any("GITHUB_WEBHOOK_SECRET replaces" in warning for warning in starting.warnings)
    without_secret = make_settings(tmp_path, github_webhook_secret=None)
    assert starting_credentials(without_secret, path).webhook_secret == Secret("whsec")


def test_the_saved_file_is_hidden_from_sandboxed_commands(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert tmp_path / "github-app.json" in hidden_from_commands(settings)


def test_a_saved_file_others_may_read_is_refused(tmp_path: Path, app_key: tuple[str, str]) -> None:
    path = saved(tmp_path, app_key[0])
    path.chmod(0o640)
    with pytest.raises(CredentialsError, match="chmod 600"):
        load_credentials(path)
    assert starting_credentials(make_settings(tmp_path), path).app is None
