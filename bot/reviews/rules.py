"""Per-repository rules from `.github/biagent.yml`, read through the contents API and cached.

The file is read from the default branch (the GitHub App convention), so a pull request cannot
loosen its own rules. A missing file means the defaults from the settings; a file that does not
parse is logged and the defaults are used (a broken file must not switch caps off). Shape:

    setup: make setup              # the engine's setup command
    test: make test                # the engine's test command
    reviews:
      enabled: true
      debounce_seconds: 30
      max_wait_seconds: 300
      allowed_bots: ["renovate[bot]"]  # bots whose comments are worked (others are ignored)
      commands_from: [alice, bob]      # who may run slash commands (besides needing write)
      caps:
        runs_per_hour: 6
        consecutive_commits: 5
        usd_per_pr: 20
        usd_per_installation_day: 100
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import cachetools
import gidgethub
import yaml

from bot.clock import Clock
from bot.config import Settings

log = logging.getLogger(__name__)

RULES_PATH = ".github/biagent.yml"
RULES_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class RepoRules:
    enabled: bool = True
    debounce_s: float = 30.0
    max_wait_s: float = 300.0
    allowed_bots: frozenset[str] = frozenset()
    commands_from: frozenset[str] | None = None
    max_runs_per_hour: int = 6
    max_consecutive_commits: int = 5
    max_usd_per_pr: float = 20.0
    max_usd_per_installation_day: float = 100.0
    setup_command: str | None = None
    test_command: str | None = None
    problems: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def for_engine(self) -> dict[str, Any]:
        return {"setup": self.setup_command, "test": self.test_command, **self.raw}


def defaults(settings: Settings) -> RepoRules:
    return RepoRules(
        debounce_s=settings.review_debounce_seconds,
        max_wait_s=settings.review_max_wait_seconds,
        max_runs_per_hour=settings.review_max_runs_per_hour,
        max_consecutive_commits=settings.review_max_consecutive_commits,
        max_usd_per_pr=settings.review_max_usd_per_pr,
        max_usd_per_installation_day=settings.review_max_usd_per_installation_day,
    )


def parse_rules(text: str, base: RepoRules) -> RepoRules:
    """The rules a file's text gives on top of `base`; problems are listed, never raised."""
    problems: list[str] = []
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        return _with_problems(base, [f"{RULES_PATH} is not valid YAML: {error}"])
    if not isinstance(document, dict):
        return _with_problems(base, [f"{RULES_PATH} must be a mapping"])
    reviews = document.get("reviews") or {}
    if not isinstance(reviews, dict):
        problems.append("reviews: must be a mapping")
        reviews = {}
    caps = reviews.get("caps") or {}
    if not isinstance(caps, dict):
        problems.append("reviews.caps: must be a mapping")
        caps = {}

    def number(source: dict[str, Any], key: str, default: float, label: str) -> float:
        value = source.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.append(f"{label}: expected a number >= 0, got {value!r}")
            return default
        return float(value)

    def names(key: str) -> frozenset[str] | None:
        value = reviews.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"reviews.{key}: expected a list of logins")
            return None
        return frozenset(v.lower() for v in value)

    debounce = number(reviews, "debounce_seconds", base.debounce_s, "reviews.debounce_seconds")
    max_wait = number(reviews, "max_wait_seconds", base.max_wait_s, "reviews.max_wait_seconds")
    if max_wait < debounce:
        problems.append("reviews.max_wait_seconds: shorter than debounce_seconds; using both")
        max_wait = debounce
    setup, test = document.get("setup"), document.get("test")
    return RepoRules(
        enabled=bool(reviews.get("enabled", True)),
        debounce_s=debounce,
        max_wait_s=max_wait,
        allowed_bots=names("allowed_bots") or frozenset(),
        commands_from=names("commands_from"),
        max_runs_per_hour=int(
            number(caps, "runs_per_hour", base.max_runs_per_hour, "reviews.caps.runs_per_hour")
        ),
        max_consecutive_commits=int(
            number(
                caps,
                "consecutive_commits",
                base.max_consecutive_commits,
                "reviews.caps.consecutive_commits",
            )
        ),
        max_usd_per_pr=number(caps, "usd_per_pr", base.max_usd_per_pr, "reviews.caps.usd_per_pr"),
        max_usd_per_installation_day=number(
            caps,
            "usd_per_installation_day",
            base.max_usd_per_installation_day,
            "reviews.caps.usd_per_installation_day",
        ),
        setup_command=setup if isinstance(setup, str) else None,
        test_command=test if isinstance(test, str) else None,
        problems=tuple(problems),
        raw=document,
    )


def _with_problems(base: RepoRules, problems: list[str]) -> RepoRules:
    return RepoRules(
        enabled=base.enabled,
        debounce_s=base.debounce_s,
        max_wait_s=base.max_wait_s,
        max_runs_per_hour=base.max_runs_per_hour,
        max_consecutive_commits=base.max_consecutive_commits,
        max_usd_per_pr=base.max_usd_per_pr,
        max_usd_per_installation_day=base.max_usd_per_installation_day,
        problems=tuple(problems),
    )


class RulesCache:
    """Rules per repository, kept `RULES_TTL_S` on the injected clock."""

    def __init__(self, settings: Settings, clock: Clock, ttl_s: float = RULES_TTL_S) -> None:
        self.settings = settings
        self._cache: cachetools.TTLCache[str, RepoRules] = cachetools.TTLCache(
            maxsize=1024, ttl=ttl_s, timer=clock.monotonic
        )

    async def rules(self, gh: Any, repository: str) -> RepoRules:
        cached = self._cache.get(repository)
        if cached is not None:
            return cached
        base = defaults(self.settings)
        try:
            found = await gh.getitem(f"/repos/{repository}/contents/{RULES_PATH}")
        except gidgethub.BadRequest as error:
            if int(error.status_code) != 404:
                raise
            rules = base
        else:
            text = base64.b64decode(found.get("content", "")).decode("utf-8", errors="replace")
            rules = parse_rules(text, base)
            for problem in rules.problems:
                log.warning("%s: %s", repository, problem)
        self._cache[repository] = rules
        return rules
