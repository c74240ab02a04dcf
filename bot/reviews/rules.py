"""Per-repository rules from `.github/biagent.yml`, read through the contents API and cached.

The file is read from the default branch (the GitHub App convention), so a pull request cannot
loosen its own rules. Its parts are typed models (`CommandsPart`, `ReviewsPart`, `CapsPart`);
whatever the file leaves out comes from the settings (bot/config.py), which hold every default
once. A missing file means the settings' values; a key that does not fit its model is logged and
left out, keeping the settings' value (a broken file must not switch caps off). Shape:

    setup: make setup              # the engine's setup command
    test: make test                # the engine's test command
    reviews:
      enabled: true
      debounce_seconds: 10           # else REVIEW_DEBOUNCE_SECONDS
      max_wait_seconds: 120          # else REVIEW_MAX_WAIT_SECONDS
      allowed_bots: ["renovate[bot]"]  # bots whose comments are worked (others are ignored)
      commands_from: [alice, bob]      # who may run slash commands (besides needing write)
      resolve_threads: true            # resolve the threads fixed in a pushed commit
      rerequest_review: true           # re-request review from those whose comments it fixed
      caps:                          # else the REVIEW_MAX_* settings
        runs_per_hour: 3
        consecutive_commits: 2
        usd_per_pr: 5
        usd_per_installation_day: 50
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import cachetools
import gidgethub
import msgspec
import yaml

from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS, Settings

log = logging.getLogger(__name__)

RULES_PATH = ".github/biagent.yml"
RULES_TTL_S = 300.0

NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class CommandsPart(msgspec.Struct, frozen=True):
    """The top of the file: the engine's commands, one or a list (bot/worktrees reads the list
    form); keys of other concerns are left alone."""

    setup: str | list[str] | None = None
    test: str | list[str] | None = None


class ReviewsPart(msgspec.Struct, frozen=True):
    """`reviews` but its caps; a window left out keeps the settings' window."""

    enabled: bool = True
    debounce_seconds: NonNegative | None = None
    max_wait_seconds: NonNegative | None = None
    allowed_bots: list[str] | None = None
    commands_from: list[str] | None = None
    resolve_threads: bool | None = None
    rerequest_review: bool | None = None


class CapsPart(msgspec.Struct, frozen=True):
    """`reviews.caps`; a cap left out keeps the settings' cap."""

    runs_per_hour: NonNegative | None = None
    consecutive_commits: NonNegative | None = None
    usd_per_pr: NonNegative | None = None
    usd_per_installation_day: NonNegative | None = None


@dataclass(frozen=True, slots=True)
class RepoRules:
    """A repository's rules; the shared defaults are the settings' (bot/config.py)."""

    enabled: bool = True
    debounce_s: float = DEFAULT_SETTINGS.review_debounce_seconds
    max_wait_s: float = DEFAULT_SETTINGS.review_max_wait_seconds
    allowed_bots: frozenset[str] = frozenset()
    commands_from: frozenset[str] | None = None
    resolve_threads: bool = True  # after a push, resolve the threads it fixed (after_push.py)
    rerequest_review: bool = True  # after a push, re-request those whose comments it fixed
    max_runs_per_hour: int = DEFAULT_SETTINGS.review_max_runs_per_hour
    max_consecutive_commits: int = DEFAULT_SETTINGS.review_max_consecutive_commits
    max_usd_per_pr: float = DEFAULT_SETTINGS.review_max_usd_per_pr
    max_usd_per_installation_day: float = DEFAULT_SETTINGS.review_max_usd_per_installation_day
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


Part = TypeVar("Part", CommandsPart, ReviewsPart, CapsPart)


def _read_part(value: Any, model: type[Part], where: str, problems: list[str]) -> Part:
    """`value` as `model`, keeping each key that is valid on its own: a bad key is reported and
    left out, so a typo in one cap never switches the others off."""
    if value is None:
        return model()
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping")
        return model()
    accepted = {}
    for key, item in value.items():
        try:
            msgspec.convert({key: item}, model, strict=False)
        except msgspec.ValidationError as error:
            expected = str(error).split(" - at ", 1)[0]  # msgspec's words, without its path
            problems.append(f"{where}.{key}: {expected} ({item!r})".lstrip("."))
        else:
            accepted[key] = item
    return msgspec.convert(accepted, model, strict=False)


def _logins(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(name.lower() for name in names)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _or_flag(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def parse_rules(text: str, base: RepoRules) -> RepoRules:
    """The rules a file's text gives on top of `base`; problems are listed, never raised."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        return dataclasses.replace(base, problems=(f"{RULES_PATH} is not valid YAML: {error}",))
    if not isinstance(document, dict):
        return dataclasses.replace(base, problems=(f"{RULES_PATH} must be a mapping",))
    problems: list[str] = []
    commands = _read_part(document, CommandsPart, "", problems)
    reviews_value = document.get("reviews")
    caps_value = reviews_value.get("caps") if isinstance(reviews_value, dict) else None
    if isinstance(reviews_value, dict):
        reviews_value = {key: item for key, item in reviews_value.items() if key != "caps"}
    reviews = _read_part(reviews_value, ReviewsPart, "reviews", problems)
    caps = _read_part(caps_value, CapsPart, "reviews.caps", problems)
    debounce = _or(reviews.debounce_seconds, base.debounce_s)
    max_wait = _or(reviews.max_wait_seconds, base.max_wait_s)
    if max_wait < debounce:
        problems.append("reviews.max_wait_seconds: shorter than debounce_seconds; using both")
        max_wait = debounce
    return RepoRules(
        enabled=reviews.enabled,
        debounce_s=debounce,
        max_wait_s=max_wait,
        allowed_bots=_logins(reviews.allowed_bots) or frozenset(),
        commands_from=_logins(reviews.commands_from),
        resolve_threads=_or_flag(reviews.resolve_threads, base.resolve_threads),
        rerequest_review=_or_flag(reviews.rerequest_review, base.rerequest_review),
        max_runs_per_hour=int(_or(caps.runs_per_hour, base.max_runs_per_hour)),
        max_consecutive_commits=int(_or(caps.consecutive_commits, base.max_consecutive_commits)),
        max_usd_per_pr=_or(caps.usd_per_pr, base.max_usd_per_pr),
        max_usd_per_installation_day=_or(
            caps.usd_per_installation_day, base.max_usd_per_installation_day
        ),
        setup_command=commands.setup if isinstance(commands.setup, str) else None,
        test_command=commands.test if isinstance(commands.test, str) else None,
        problems=tuple(problems),
        raw=document,
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
