"""Settings: read once from the environment at start-up, validated, then passed in.

`Settings` is the one typed model of the configuration: each field declares its default once,
and its environment variable with the rule that reads it (`Env` in the field's annotation).
`load_settings` walks the fields, so a default never has to be repeated by the reader; the
per-repository `.github/biagent.yml` rules (bot/reviews/rules.py) take theirs from here too.
The variable names are the contract of docs/design.md (Configuration); the README documents
every one. Each bad value gives one line of `ConfigError`. The readers that turn a variable's
text into a value (and `Secret`, which keeps secrets out of prints and logs) are in
bot/settings_readers.py.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any

from bot.roles import Role, default_instance_id, sqlite_problem
from bot.settings_readers import (
    PRIVATE_KEY_PATH,
    AnyPath,
    AppId,
    DatabaseUrl,
    Duration,
    Env,
    Environment,
    Member,
    Networks,
    Number,
    OneOf,
    Present,
    PrivateKey,
    ReadableFile,
    Secret,
    SecretText,
    Switch,
    Text,
    Url,
    WholeNumber,
)
from storage.database import is_postgres_url, redacted_url

SHORT_TOKEN = 16  # an API token shorter than this is accepted, with a warning at start-up
DEFAULT_MODEL = "claude-sonnet-4-5"
PROCESS_INSTANCE_ID = default_instance_id()  # one per process start: BIAGENT_INSTANCE_ID's default


class ConfigError(Exception):
    """One or more settings are invalid; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Every setting, its one default, and the variable it is read from (README: Settings)."""

    host: Annotated[str, Env("HOST", Text())] = "127.0.0.1"
    port: Annotated[int, Env("PORT", WholeNumber(0, 65535))] = 8080
    database_url: Annotated[str, Env("DATABASE_URL", DatabaseUrl())] = "sqlite:///biagent.db"
    database_synchronous: Annotated[
        str, Env("DATABASE_SYNCHRONOUS", OneOf(("NORMAL", "FULL", "EXTRA")))
    ] = "NORMAL"
    # PostgreSQL only: the readers' pool size and every statement's time limit
    database_pool_size: Annotated[int, Env("DATABASE_POOL_SIZE", WholeNumber(1, 1000))] = 10
    database_statement_timeout: Annotated[
        float, Env("DATABASE_STATEMENT_TIMEOUT", Duration(low=0.1))
    ] = 30.0
    # what this process does (bot/roles.py), and how often a worker looks for work other
    # instances wrote
    role: Annotated[Role, Env("BIAGENT_ROLE", Member(Role))] = Role.ALL
    worker_poll_interval: Annotated[float, Env("WORKER_POLL_INTERVAL", Duration(low=0.05))] = 1.0
    api_token: Annotated[Secret | None, Env("BIAGENT_API_TOKEN", SecretText())] = None
    public_url: Annotated[str | None, Env("BIAGENT_PUBLIC_URL", Url())] = None
    # the reverse proxies whose X-Forwarded-Proto/-Host and Forwarded headers are believed
    trusted_proxies: Annotated[
        tuple[IPv4Network | IPv6Network, ...], Env("BIAGENT_TRUSTED_PROXIES", Networks())
    ] = ()
    github_app_id: Annotated[str | None, Env("GITHUB_APP_ID", AppId())] = None
    github_private_key: Annotated[Secret | None, Env("GITHUB_PRIVATE_KEY", PrivateKey())] = None
    github_private_key_path: Annotated[Path | None, Env(PRIVATE_KEY_PATH, AnyPath())] = None
    github_webhook_secret: Annotated[Secret | None, Env("GITHUB_WEBHOOK_SECRET", SecretText())] = (
        None
    )
    github_api_url: Annotated[str, Env("GITHUB_API_URL", Url())] = "https://api.github.com"
    # where the App made by the manifest flow is saved (bot/github/credentials.py); None: beside
    # the database
    secrets_dir: Annotated[Path | None, Env("BIAGENT_SECRETS_DIR", AnyPath())] = None
    anthropic_configured: Annotated[bool, Env("ANTHROPIC_API_KEY", Present())] = False
    anthropic_base_url: Annotated[str | None, Env("ANTHROPIC_BASE_URL", Url())] = None
    model: Annotated[str, Env("BIAGENT_MODEL", Text())] = DEFAULT_MODEL
    jira_url: Annotated[str | None, Env("JIRA_URL", Url())] = None
    jira_email: Annotated[str | None, Env("JIRA_EMAIL", Text())] = None
    jira_api_token: Annotated[Secret | None, Env("JIRA_API_TOKEN", SecretText())] = None
    jira_jql: Annotated[str | None, Env("JIRA_JQL", Text())] = None
    jira_webhook_secret: Annotated[Secret | None, Env("JIRA_WEBHOOK_SECRET", SecretText())] = None
    jira_sync_interval: Annotated[float, Env("JIRA_SYNC_INTERVAL", Duration(low=10.0))] = 300.0
    # extension: JIRA_SYNC_AT_START=0 waits one interval before the first sync
    jira_sync_at_start: Annotated[bool, Env("JIRA_SYNC_AT_START", Switch())] = True
    review_debounce_seconds: Annotated[float, Env("REVIEW_DEBOUNCE_SECONDS", Duration())] = 30.0
    review_max_wait_seconds: Annotated[float, Env("REVIEW_MAX_WAIT_SECONDS", Duration())] = 300.0
    review_max_runs_per_hour: Annotated[
        int, Env("REVIEW_MAX_RUNS_PER_HOUR", WholeNumber(1, 1000))
    ] = 6
    review_max_consecutive_commits: Annotated[
        int, Env("REVIEW_MAX_CONSECUTIVE_COMMITS", WholeNumber(1, 1000))
    ] = 5
    review_max_usd_per_pr: Annotated[float, Env("REVIEW_MAX_USD_PER_PR", Number())] = 20.0
    review_max_usd_per_installation_day: Annotated[
        float, Env("REVIEW_MAX_USD_PER_INSTALLATION_DAY", Number())
    ] = 100.0
    github_write_spacing_seconds: Annotated[
        float, Env("GITHUB_WRITE_SPACING_SECONDS", Duration())
    ] = 1.0
    worktree_root: Annotated[Path, Env("WORKTREE_ROOT", AnyPath())] = Path("worktrees")
    worktree_quota_gb: Annotated[int, Env("WORKTREE_QUOTA_GB", WholeNumber(1, 100_000))] = 50
    worktree_idle_ttl: Annotated[float, Env("WORKTREE_IDLE_TTL", Duration(low=60.0))] = 3 * 86400.0
    worktree_setup_timeout: Annotated[float, Env("WORKTREE_SETUP_TIMEOUT", Duration(low=1.0))] = (
        1200.0
    )
    worktree_port_base: Annotated[int, Env("WORKTREE_PORT_BASE", WholeNumber(1024, 60000))] = 20000
    worktree_spares: Annotated[int, Env("WORKTREE_SPARES", WholeNumber(0, 8))] = 1
    dispatch_concurrency: Annotated[int, Env("DISPATCH_CONCURRENCY", WholeNumber(1, 64))] = 4
    # issue 13: who this instance is to the others sharing the database (worktree sessions,
    # claims); by default new at each process start, and the same everywhere in the process
    instance_id: Annotated[str, Env("BIAGENT_INSTANCE_ID", Text())] = PROCESS_INSTANCE_ID
    work_lease_seconds: Annotated[float, Env("WORK_LEASE_SECONDS", Duration(low=3.0))] = 60.0
    delivery_max_attempts: Annotated[int, Env("DELIVERY_MAX_ATTEMPTS", WholeNumber(1, 100))] = 8
    events_kept: Annotated[int, Env("EVENTS_KEPT", WholeNumber(100, 100_000_000))] = 100_000
    # What anonymous clients may hold (web/webhook_body.py, web/serving.py, web/ws.py); with no
    # MAX_CONNECTIONS, 90% of the open-file limit (raised to the hard one) less the listen backlog
    webhook_read_budget_mb: Annotated[int, Env("WEBHOOK_READ_BUDGET_MB", WholeNumber(25, 9999))] = (
        64
    )
    webhook_body_timeout: Annotated[float, Env("WEBHOOK_BODY_TIMEOUT", Duration(0.1))] = 15.0
    http_keepalive_timeout: Annotated[float, Env("HTTP_KEEPALIVE_TIMEOUT", Duration(0.1))] = 15.0
    max_connections: Annotated[int | None, Env("MAX_CONNECTIONS", WholeNumber(1, 10**7))] = None
    ws_send_timeout: Annotated[float, Env("WS_SEND_TIMEOUT", Duration(0.1))] = 10.0
    log_level: Annotated[str, Env("LOG_LEVEL", OneOf(("DEBUG", "INFO", "WARNING", "ERROR")))] = (
        "INFO"
    )
    agents_file: Annotated[Path | None, Env("BIAGENT_AGENTS_FILE", ReadableFile())] = None
    agent_max_retries: Annotated[int, Env("AGENT_MAX_RETRIES", WholeNumber(0, 20))] = 4
    agent_bash_timeout: Annotated[float, Env("AGENT_BASH_TIMEOUT", Duration(low=1.0))] = 120.0
    token_buffer_ttl: Annotated[float, Env("TOKEN_BUFFER_TTL", Duration(low=10.0))] = 3600.0
    # a browser session's offline events (bot/sessions/): how long kept, how many at most
    offline_events_ttl: Annotated[float, Env("OFFLINE_EVENTS_TTL", Duration(low=60.0))] = (
        7 * 86400.0
    )
    offline_events_per_session: Annotated[
        int, Env("OFFLINE_EVENTS_PER_SESSION", WholeNumber(1, 100_000))
    ] = 500
    pipeline_max_usd: Annotated[float, Env("PIPELINE_MAX_USD", Number())] = 25.0
    # None: the agent's own max_cost_usd (bot/agents/agents.yml) caps each step
    pipeline_step_max_usd: Annotated[float | None, Env("PIPELINE_STEP_MAX_USD", Number())] = None
    pipeline_repeat_limit: Annotated[int, Env("PIPELINE_REPEAT_LIMIT", WholeNumber(2, 100))] = 5
    pipeline_trigger_label: Annotated[str, Env("PIPELINE_TRIGGER_LABEL", Text())] = "biagent"
    # the JIRA transition applied when a pipeline's PR opens; None: no transition
    pipeline_pr_transition: Annotated[str | None, Env("PIPELINE_PR_TRANSITION", Text())] = None

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

    def role_problem(self) -> str | None:
        """Why this role cannot run on this database (a split needs PostgreSQL), or None."""
        return None if is_postgres_url(self.database_url) else sqlite_problem(self.role)

    def database_options(self) -> dict[str, Any]:
        """What `Database.open` takes besides the URL (each engine reads its own)."""
        return {
            "synchronous": self.database_synchronous,
            "pool_size": self.database_pool_size,
            "statement_timeout_s": self.database_statement_timeout,
        }

    def database_description(self) -> str:
        """The database for the start-up banner, its password hidden."""
        if is_postgres_url(self.database_url):
            return (
                f"{redacted_url(self.database_url)} (PostgreSQL, pool {self.database_pool_size},"
                f" statement timeout {self.database_statement_timeout:g}s)"
            )
        return f"{self.database_url} (synchronous={self.database_synchronous})"

    def summary(self) -> list[str]:
        """What is configured and what is off, for the start-up banner (no secrets)."""
        github = (
            f"on (app {self.github_app_id}, {self.github_api_url})"
            if self.github_enabled
            else "not in the environment (GITHUB_APP_ID and GITHUB_PRIVATE_KEY or"
            " GITHUB_PRIVATE_KEY_PATH): the App saved by the status page's setup, if any"
        )
        webhooks = (
            "on"
            if self.github_webhook_secret
            else "the saved App's secret, if any, else refused with 503 (GITHUB_WEBHOOK_SECRET)"
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
            f"role: {self.role} (instance {self.instance_id})",
            f"database: {self.database_description()}",
            f"GitHub App: {github}",
            f"GitHub webhooks: {webhooks}",
            f"Anthropic agents: {anthropic}",
            f"JIRA: {jira}",
            f"review window: {self.review_debounce_seconds:g}s quiet, "
            f"{self.review_max_wait_seconds:g}s cap",
            f"worktrees: {self.worktree_root}",
        ]


DEFAULT_SETTINGS = Settings()
"""Every default, for code that needs one without an environment (the repository rules)."""


@functools.cache
def variables() -> dict[str, Env]:
    """Each settings field that is read from the environment, with its variable and rule."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    found = {}
    for field in dataclasses.fields(Settings):
        for mark in getattr(hints[field.name], "__metadata__", ()):
            if isinstance(mark, Env):
                found[field.name] = mark
    return found


def _check_together(environment: Environment, values: dict[str, Any]) -> None:
    """The rules that involve two settings; each is skipped when one side was already refused."""
    github = {"GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", PRIVATE_KEY_PATH}
    app_id, private_key = values["github_app_id"], values["github_private_key"]
    if (app_id is None) != (private_key is None) and not environment.refused & github:
        missing = "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH" if app_id else "GITHUB_APP_ID"
        environment.refuse(missing, "needed too, the GitHub App needs both id and key")
    if values["jira_url"] and values["jira_api_token"] is None:
        environment.refuse("JIRA_API_TOKEN", "needed when JIRA_URL is set")
    if not environment.refused & {"BIAGENT_ROLE", "DATABASE_URL"}:
        problem = sqlite_problem(values["role"])
        if problem is not None and not is_postgres_url(values["database_url"]):
            environment.refuse("BIAGENT_ROLE", problem)
    if values["review_max_wait_seconds"] < values["review_debounce_seconds"]:
        environment.refuse(
            "REVIEW_MAX_WAIT_SECONDS", "must not be shorter than REVIEW_DEBOUNCE_SECONDS"
        )


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raises ConfigError listing all bad ones."""
    environment = Environment(environ)
    values = {
        field: env.rule.read(environment, env.name, getattr(DEFAULT_SETTINGS, field))
        for field, env in variables().items()
    }
    _check_together(environment, values)
    if environment.problems:
        raise ConfigError(environment.problems)
    return Settings(**values)
