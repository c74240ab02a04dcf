"""Settings from the environment: defaults, one clear line per bad value, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from tests.fakes.github import generate_app_key


def test_defaults_match_the_design() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite:///biagent.db"
    assert settings.github_api_url == "https://api.github.com"
    assert (settings.review_debounce_seconds, settings.review_max_wait_seconds) == (30.0, 300.0)
    assert settings.worktree_root == Path("worktrees")
    assert not settings.github_enabled and not settings.jira_enabled


def test_each_bad_value_gives_one_line() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            {
                "PORT": "eighty",
                "GITHUB_APP_ID": "abc",
                "REVIEW_DEBOUNCE_SECONDS": "soon",
                "JIRA_URL": "jira.example.com",
                "DATABASE_SYNCHRONOUS": "sometimes",
            }
        )
    problems = error.value.problems
    assert any(p.startswith("PORT:") for p in problems)
    assert any(p.startswith("GITHUB_APP_ID:") for p in problems)
    assert any(p.startswith("REVIEW_DEBOUNCE_SECONDS:") for p in problems)
    assert any(p.startswith("JIRA_URL:") for p in problems)
    assert any(p.startswith("DATABASE_SYNCHRONOUS:") for p in problems)
    assert len(problems) == 5


def test_private_key_with_escaped_newlines_and_secrets_never_print(tmp_path: Path) -> None:
    private_pem, _ = generate_app_key()
    pem = private_pem.strip().replace("\n", "\\n")  # as one line in an env file
    settings = load_settings(
        {"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": "topsecret"}
    )
    assert settings.github_enabled
    assert settings.github_private_key is not None
    assert "\n" in settings.github_private_key.reveal()
    shown = repr(settings) + "\n".join(settings.summary())
    assert private_pem.splitlines()[1] not in shown and "topsecret" not in shown


def test_private_key_path_is_read(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(generate_app_key()[0].replace("\n", "\r\n"))  # written on Windows
    settings = load_settings({"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY_PATH": str(key)})
    assert settings.github_private_key is not None


def test_damaged_private_key_is_refused_at_start() -> None:
    damaged = "-----BEGIN RSA PRIVATE KEY-----\nBBBB\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as error:
        load_settings({"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": damaged})
    assert error.value.problems == [
        "GITHUB_PRIVATE_KEY: the PEM private key cannot be read"
        " (damaged, or protected by a password)"
    ]
    assert "BBBB" not in str(error.value)


def test_short_api_token_is_accepted_with_a_warning() -> None:
    settings = load_settings({"BIAGENT_API_TOKEN": "test-token"})
    assert settings.api_token is not None and settings.api_token.reveal() == "test-token"
    assert any("warning: BIAGENT_API_TOKEN is shorter" in line for line in settings.summary())
    assert not any("test-token" in line for line in settings.summary())


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH: cannot read"):
        load_settings({"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "no")})


def test_durations_accept_units() -> None:
    settings = load_settings({"JIRA_SYNC_INTERVAL": "5m", "REVIEW_MAX_WAIT_SECONDS": "1h"})
    assert settings.jira_sync_interval == 300.0
    assert settings.review_max_wait_seconds == 3600.0


def test_bad_configuration_exits_2_with_the_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.__main__ import main

    monkeypatch.setenv("PORT", "-1")
    assert main([]) == 2
    assert "PORT: must be between 0 and 65535" in capsys.readouterr().err


def test_every_setting_is_read_from_its_own_variable() -> None:
    import dataclasses

    from bot.config import Settings, variables

    read = variables()
    assert set(read) == {field.name for field in dataclasses.fields(Settings)}
    assert len({env.name for env in read.values()}) == len(read)


def test_an_id_without_a_key_is_reported_once_with_what_is_missing() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"GITHUB_APP_ID": "12", "PORT": "80"})
    assert error.value.problems == [
        "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH: needed too, the GitHub App needs both id"
        " and key"
    ]


def test_trusted_proxies_are_addresses_and_networks() -> None:
    settings = load_settings({"BIAGENT_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16,::1"})
    assert [str(network) for network in settings.trusted_proxies] == [
        "10.0.0.5/32",
        "192.168.0.0/16",
        "::1/128",
    ]
    assert load_settings({}).trusted_proxies == ()
    with pytest.raises(ConfigError) as refused:
        load_settings({"BIAGENT_TRUSTED_PROXIES": "10.0.0.5, proxy.local"})
    assert refused.value.problems == [
        "BIAGENT_TRUSTED_PROXIES: 'proxy.local' is not an IP address or network"
    ]
