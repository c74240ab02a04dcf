"""`.github/biagent.yml`: typed parts on top of the settings, a bad key reported and left out."""

from __future__ import annotations

import base64
import dataclasses

from bot.clock import ManualClock
from bot.config import DEFAULT_SETTINGS, load_settings
from bot.reviews.rules import RULES_PATH, RepoRules, RulesCache, defaults, parse_rules
from tests.fakes.recording_github import RecordingGitHub


def test_rules_without_a_file_are_the_settings_defaults() -> None:
    assert defaults(DEFAULT_SETTINGS) == RepoRules()
    assert RepoRules().max_wait_s == DEFAULT_SETTINGS.review_max_wait_seconds


def test_what_the_file_leaves_out_comes_from_the_settings() -> None:
    settings = load_settings({"REVIEW_DEBOUNCE_SECONDS": "5", "REVIEW_MAX_USD_PER_PR": "3"})
    rules = parse_rules("reviews:\n  max_wait_seconds: 60\n", defaults(settings))
    assert (rules.debounce_s, rules.max_wait_s, rules.max_usd_per_pr) == (5.0, 60.0, 3.0)
    assert rules.problems == ()


def test_a_bad_cap_is_reported_and_the_other_caps_still_apply() -> None:
    text = "reviews:\n  caps:\n    usd_per_pr: -1\n    runs_per_hour: 2\n"
    rules = parse_rules(text, RepoRules())
    assert (rules.max_runs_per_hour, rules.max_usd_per_pr) == (2, RepoRules().max_usd_per_pr)
    assert [problem.split(":")[0] for problem in rules.problems] == ["reviews.caps.usd_per_pr"]


def test_a_list_of_setup_commands_is_for_the_worktrees_not_a_problem() -> None:
    rules = parse_rules("setup: [make deps, make build]\ntest: make check\n", RepoRules())
    assert rules.problems == () and rules.setup_command is None
    assert rules.for_engine()["setup"] == ["make deps", "make build"]
    assert rules.test_command == "make check"


def test_reviews_that_is_not_a_mapping_keeps_the_base_rules() -> None:
    base = dataclasses.replace(RepoRules(), max_runs_per_hour=3)
    rules = parse_rules("reviews: [debounce_seconds]\n", base)
    assert rules.problems == ("reviews: must be a mapping",)
    assert rules.max_runs_per_hour == 3 and rules.enabled


def test_reviews_can_be_switched_off_and_logins_are_compared_lowercase() -> None:
    text = 'reviews:\n  enabled: false\n  allowed_bots: ["Renovate[bot]"]\n'
    rules = parse_rules(text, RepoRules())
    assert not rules.enabled and rules.allowed_bots == frozenset({"renovate[bot]"})


async def test_the_file_is_read_once_from_the_contents_api_and_a_missing_one_is_the_settings() -> (
    None
):
    text = "reviews:\n  debounce_seconds: 7\n"
    content = base64.b64encode(text.encode()).decode()
    gh = RecordingGitHub({("GET", f"/repos/o/r/contents/{RULES_PATH}"): {"content": content}})
    cache = RulesCache(DEFAULT_SETTINGS, ManualClock())
    assert (await cache.rules(gh, "o/r")).debounce_s == 7.0
    assert (await cache.rules(gh, "o/r")).debounce_s == 7.0
    assert [call.path for call in gh.calls] == [f"/repos/o/r/contents/{RULES_PATH}"]
    assert await cache.rules(gh, "o/none") == RepoRules()  # GitHub answered 404
