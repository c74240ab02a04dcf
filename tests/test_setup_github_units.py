"""The manifest flow's decisions without a server: GitHub's web address, the states, the form."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.clock import ManualClock
from bot.github.manifest import AppRequest, ManifestError, ManifestStates, app_request, web_url


@pytest.mark.parametrize(
    ("api_url", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com"),
        ("https://api.acme.ghe.com", "https://acme.ghe.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ],
)
def test_githubs_web_address_follows_from_the_api_url(api_url: str, web: str) -> None:
    assert web_url(api_url) == web


async def test_a_state_is_good_once_and_for_an_hour() -> None:
    clock = ManualClock()
    states = ManifestStates(clock)
    request = AppRequest("biagent", "acme")
    once, later = states.issue(request), states.issue(request)
    assert once != later and len(once) >= 40
    assert states.take(once) == request
    assert states.take(once) is None
    await clock.advance(timedelta(hours=1).total_seconds())
    assert states.take(later) is None


def test_the_oldest_states_go_when_too_many_are_issued() -> None:
    states = ManifestStates(ManualClock(), kept=2)
    first, second, third = (states.issue(AppRequest("b")) for _ in range(3))
    assert states.take(first) is None
    assert states.take(second) is not None and states.take(third) is not None


def test_an_app_name_and_an_organisation_login_are_checked() -> None:
    assert app_request("  my   bot ", None) == AppRequest("my bot", None)
    assert app_request("b", "acme-corp").owner == "the organisation acme-corp"
    for name, organization in (("", None), ("x" * 35, None), ("b", "-acme"), ("b", "a/b")):
        with pytest.raises(ManifestError):
            app_request(name, organization)
