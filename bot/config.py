"""Settings: read once from the environment at start-up, validated, then passed in.

The variable names are the contract of DESIGN.md (Configuration); the ones marked "extension"
are ours and documented in the README. Each bad value gives one line of `ConfigError`. Secrets
are wrapped in `Secret` so that printing or logging the settings never shows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

SHORT_TOKEN = 16  # an API token shorter than this is accepted, with a warning at start-up
DEFAULT_MODEL = "claude-sonnet-4-5"


class ConfigError(Exception):
    """One or more settings are invalid; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A secret value that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///biagent.db"
    database_synchronous: str = "NORMAL"
    api_token: Secret | None = None
    public_url: str | None = None
    github_app_id: str | None = None
    github_private_key: Secret | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: Secret | None = None
    github_api_url: str = "https://api.github.com"
    anthropic_configured: bool = False
    anthropic_base_url: str | None = None
    model: str = DEFAULT_MODEL
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: Secret | None = None
    jira_jql: str | None = None
    jira_webhook_secret: Secret | None = None
    jira_sync_interval: float = 300.0
    jira_sync_at_start: bool = True  # extension: JIRA_SYNC_AT_START=0 waits one interval
    review_debounce_seconds: float = 30.0
    review_max_wait_seconds: float = 300.0
    review_max_runs_per_hour: int = 6
    review_max_consecutive_commits: int = 5
    review_max_usd_per_pr: float = 20.0
    review_max_usd_per_installation_day: float = 100.0
    github_write_spacing_seconds: float = 1.0
    worktree_root: Path = Path("worktrees")
    worktree_quota_gb: float = 50.0
    worktree_idle_ttl: float = 3 * 86400.0
    worktree_setup_timeout: float = 1200.0
    worktree_port_base: int = 20000
    worktree_spares: int = 1
    dispatch_concurrency: int = 4
    delivery_max_attempts: int = 8
    events_kept: int = 100_000
    log_level: str = "INFO"
    agents_file: Path | None = None
    agent_max_retries: int = 4
    agent_bash_timeout: float = 120.0
    token_buffer_ttl: float = 3600.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def github_enabled(self) -> bool:
        return self.github_app_id is not None and self.github_private_key is not None

    @property
    def jira_enabled(self) -> bool:
        return bool(self.jira_url)

    def base_url(self) -> str:
        """Where people reach the server (for the login URL)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def summary(self) -> list[str]:
        """What is configured and what is off, for the start-up banner (no secrets)."""
        github = (
            f"on (app {self.github_app_id}, {self.github_api_url})"
            if self.github_enabled
            else "off (set GITHUB_APP_ID and GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH)"
        )
        webhooks = (
            "on" if self.github_webhook_secret else "refused with 503 (set GITHUB_WEBHOOK_SECRET)"
        )
        anthropic = (
            f"on (model {self.model})"
            if self.anthropic_configured
            else "off (set ANTHROPIC_API_KEY)"
        )
        jira = f"on ({self.jira_url})" if self.jira_enabled else "off (set JIRA_URL)"
        warnings = []
        if self.api_token is not None and len(self.api_token.reveal()) < SHORT_TOKEN:
            warnings.append(
                f"warning: BIAGENT_API_TOKEN is shorter than {SHORT_TOKEN} characters:"
                " easy to guess on anything but a test machine"
            )
        return [
            *warnings,
            f"database: {self.database_url} (synchronous={self.database_synchronous})",
            f"GitHub App: {github}",
            f"GitHub webhooks: {webhooks}",
            f"Anthropic agents: {anthropic}",
            f"JIRA: {jira}",
            f"review window: {self.review_debounce_seconds:g}s quiet, "
            f"{self.review_max_wait_seconds:g}s cap",
            f"worktrees: {self.worktree_root}",
        ]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}: expected a whole number, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}: must be between {low} and {high}, got {value}")
            return default
        return value

    def duration(self, name: str, default: float, *, low: float = 0.0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        match = _DURATION.match(raw.lower())
        if match is None:
            self.problems.append(
                f"{name}: expected seconds or a duration like 30s, 5m, 1h; got {raw!r}"
            )
            return default
        value = float(match.group(1)) * _UNITS[match.group(2)]
        if value < low:
            self.problems.append(f"{name}: must be at least {low:g} seconds, got {raw!r}")
            return default
        return value

    def decimal(self, name: str, default: float, *, low: float = 0.0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name}: expected a number, got {raw!r}")
            return default
        if value < low:
            self.problems.append(f"{name}: must be at least {low:g}, got {raw!r}")
            return default
        return value

    def url(self, name: str, default: str | None = None) -> str | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.match(r"^https?://[^\s/]+", raw):
            self.problems.append(f"{name}: expected an http(s):// URL, got {raw!r}")
            return default
        return raw.rstrip("/")

    def secret(self, name: str) -> Secret | None:
        raw = self.text(name)
        return None if raw is None else Secret(raw)


def _private_key(reader: _Reader) -> Secret | None:
    inline = reader.environ.get("GITHUB_PRIVATE_KEY", "").strip()
    path = reader.text("GITHUB_PRIVATE_KEY_PATH")
    if inline and path:
        reader.problems.append("GITHUB_PRIVATE_KEY and GITHUB_PRIVATE_KEY_PATH: set one, not both")
        return None
    if path:
        try:
            inline = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            reader.problems.append(f"GITHUB_PRIVATE_KEY_PATH: cannot read {path}: {error.strerror}")
            return None
    if not inline:
        return None
    pem = inline.replace("\\r", "").replace("\\n", "\n").replace("\r\n", "\n")
    source = "GITHUB_PRIVATE_KEY_PATH" if path else "GITHUB_PRIVATE_KEY"
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        reader.problems.append(f"{source}: not a PEM private key (no BEGIN ... PRIVATE KEY line)")
        return None
    try:  # the App's JWTs are signed with it: a key that cannot be read fails here, not later
        serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        reader.problems.append(
            f"{source}: the PEM private key cannot be read (damaged, or protected by a password)"
        )
        return None
    return Secret(pem)


def _agents_file(reader: _Reader) -> Path | None:
    raw = reader.text("BIAGENT_AGENTS_FILE")
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        reader.problems.append(f"BIAGENT_AGENTS_FILE: {raw} is not a readable file")
        return None
    return path


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raises ConfigError listing all bad ones."""
    reader = _Reader(environ)
    database_url = reader.text("DATABASE_URL") or "sqlite:///biagent.db"
    if not database_url.startswith("sqlite:///"):
        reader.problems.append(
            "DATABASE_URL: only sqlite:///path is supported in this release"
            f" (got a {database_url.split(':', 1)[0]} URL)"
        )
    synchronous = (reader.text("DATABASE_SYNCHRONOUS") or "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        reader.problems.append(
            f"DATABASE_SYNCHRONOUS: one of NORMAL, FULL, EXTRA; got {synchronous}"
        )
        synchronous = "NORMAL"
    api_token = reader.secret("BIAGENT_API_TOKEN")
    app_id = reader.text("GITHUB_APP_ID")
    if app_id is not None and not app_id.isdigit():
        reader.problems.append(f"GITHUB_APP_ID: expected the app's numeric id, got {app_id!r}")
    private_key = _private_key(reader)
    if (app_id is None) != (private_key is None) and not reader.problems:
        missing = "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH" if app_id else "GITHUB_APP_ID"
        reader.problems.append(f"{missing}: needed too, the GitHub App needs both id and key")
    jira_url = reader.url("JIRA_URL")
    if jira_url and not reader.text("JIRA_API_TOKEN"):
        reader.problems.append("JIRA_API_TOKEN: needed when JIRA_URL is set")
    debounce = reader.duration("REVIEW_DEBOUNCE_SECONDS", 30.0)
    max_wait = reader.duration("REVIEW_MAX_WAIT_SECONDS", 300.0)
    if max_wait < debounce:
        reader.problems.append(
            "REVIEW_MAX_WAIT_SECONDS: must not be shorter than REVIEW_DEBOUNCE_SECONDS"
        )
    log_level = (reader.text("LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        reader.problems.append(f"LOG_LEVEL: one of DEBUG, INFO, WARNING, ERROR; got {log_level}")
        log_level = "INFO"
    settings = Settings(
        host=reader.text("HOST") or "127.0.0.1",
        port=reader.integer("PORT", 8080, low=0, high=65535),
        database_url=database_url,
        database_synchronous=synchronous,
        api_token=api_token,
        public_url=reader.url("BIAGENT_PUBLIC_URL"),
        github_app_id=app_id,
        github_private_key=private_key,
        github_private_key_path=Path(key_path)
        if (key_path := reader.text("GITHUB_PRIVATE_KEY_PATH"))
        else None,
        github_webhook_secret=reader.secret("GITHUB_WEBHOOK_SECRET"),
        github_api_url=reader.url("GITHUB_API_URL", "https://api.github.com") or "",
        anthropic_configured=reader.text("ANTHROPIC_API_KEY") is not None,
        anthropic_base_url=reader.url("ANTHROPIC_BASE_URL"),
        model=reader.text("BIAGENT_MODEL") or DEFAULT_MODEL,
        jira_url=jira_url,
        jira_email=reader.text("JIRA_EMAIL"),
        jira_api_token=reader.secret("JIRA_API_TOKEN"),
        jira_jql=reader.text("JIRA_JQL"),
        jira_webhook_secret=reader.secret("JIRA_WEBHOOK_SECRET"),
        jira_sync_interval=reader.duration("JIRA_SYNC_INTERVAL", 300.0, low=10.0),
        jira_sync_at_start=(reader.text("JIRA_SYNC_AT_START") or "1").lower()
        not in ("0", "false", "no", "off"),
        review_debounce_seconds=debounce,
        review_max_wait_seconds=max_wait,
        review_max_runs_per_hour=reader.integer("REVIEW_MAX_RUNS_PER_HOUR", 6, low=1, high=1000),
        review_max_consecutive_commits=reader.integer(
            "REVIEW_MAX_CONSECUTIVE_COMMITS", 5, low=1, high=1000
        ),
        review_max_usd_per_pr=reader.decimal("REVIEW_MAX_USD_PER_PR", 20.0),
        review_max_usd_per_installation_day=reader.decimal(
            "REVIEW_MAX_USD_PER_INSTALLATION_DAY", 100.0
        ),
        github_write_spacing_seconds=reader.duration("GITHUB_WRITE_SPACING_SECONDS", 1.0),
        worktree_root=Path(reader.text("WORKTREE_ROOT") or "worktrees"),
        worktree_quota_gb=float(reader.integer("WORKTREE_QUOTA_GB", 50, low=1, high=100_000)),
        worktree_idle_ttl=reader.duration("WORKTREE_IDLE_TTL", 3 * 86400.0, low=60.0),
        worktree_setup_timeout=reader.duration("WORKTREE_SETUP_TIMEOUT", 1200.0, low=1.0),
        worktree_port_base=reader.integer("WORKTREE_PORT_BASE", 20000, low=1024, high=60000),
        worktree_spares=reader.integer("WORKTREE_SPARES", 1, low=0, high=8),
        dispatch_concurrency=reader.integer("DISPATCH_CONCURRENCY", 4, low=1, high=64),
        delivery_max_attempts=reader.integer("DELIVERY_MAX_ATTEMPTS", 8, low=1, high=100),
        events_kept=reader.integer("EVENTS_KEPT", 100_000, low=100, high=100_000_000),
        log_level=log_level,
        agents_file=_agents_file(reader),
        agent_max_retries=reader.integer("AGENT_MAX_RETRIES", 4, low=0, high=20),
        agent_bash_timeout=reader.duration("AGENT_BASH_TIMEOUT", 120.0, low=1.0),
        token_buffer_ttl=reader.duration("TOKEN_BUFFER_TTL", 3600.0, low=10.0),
    )
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings
