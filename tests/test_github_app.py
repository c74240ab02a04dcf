"""GitHub App auth through the real gidgethub client against the protocol fake."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import gidgethub
import pytest

from bot.clock import ManualClock
from bot.config import Secret
from bot.github.app import GitHubApp
from bot.github.manners import PoliteInstallationAPI
from tests.fakes.github import FakeGitHub


def make_app(
    fake: FakeGitHub, key: str, clock: ManualClock, session: aiohttp.ClientSession
) -> GitHubApp:
    return GitHubApp(
        app_id=str(fake.app_id),
        private_key=Secret(key),
        api_url=fake.base_url,
        session=session,
        clock=clock,
    )


async def test_identity_comes_from_get_app(
    fake_github: FakeGitHub, app_key: tuple[str, str], manual_clock: ManualClock
) -> None:
    async with aiohttp.ClientSession() as session:
        app = make_app(fake_github, app_key[0], manual_clock, session)
        identity = await app.load_identity()
    assert identity.slug == "biagent-test"
    assert identity.bot_login == "biagent-test[bot]"


async def test_installation_token_is_cached_then_refreshed_after_expiry(
    fake_github: FakeGitHub, app_key: tuple[str, str], manual_clock: ManualClock
) -> None:
    fake_github.installations[7] = {"repositories": ["octo/repo"]}
    async with aiohttp.ClientSession() as session:
        app = make_app(fake_github, app_key[0], manual_clock, session)
        gh = app.client(7)
        listed = await gh.getitem("/installation/repositories")
        first = await app.installation_token(7)
        await gh.getitem("/installation/repositories")
        assert app.tokens_minted == 1
        # Within the refresh margin of expiry, a new token is minted before it is used.
        await manual_clock.advance(timedelta(minutes=59, seconds=30).total_seconds())
        await gh.getitem("/installation/repositories")
        second = await app.installation_token(7)
        # The first token has expired at GitHub by now: only a refreshed one is accepted.
        await manual_clock.advance(60)
        await gh.getitem("/installation/repositories")
    assert listed["repositories"][0]["full_name"] == "octo/repo"
    assert second.token != first.token
    assert app.tokens_minted == 2
    assert len(fake_github.calls_to("POST", "/app/installations/7/access_tokens")) == 2


async def test_wrong_key_is_refused_by_github(
    fake_github: FakeGitHub, manual_clock: ManualClock
) -> None:
    from tests.fakes.github import generate_app_key

    other_key, _ = generate_app_key()
    async with aiohttp.ClientSession() as session:
        app = make_app(fake_github, other_key, manual_clock, session)
        with pytest.raises(gidgethub.HTTPException) as refused:
            await app.installation_token(7)
    assert refused.value.status_code == 401
    assert app.tokens_minted == 0


async def test_each_installation_gets_the_polite_client_with_a_cache_of_its_own(
    fake_github: FakeGitHub, app_key: tuple[str, str], manual_clock: ManualClock
) -> None:
    async with aiohttp.ClientSession() as session:
        app = make_app(fake_github, app_key[0], manual_clock, session)
        seven, seven_again, eight = app.client(7), app.client(7), app.client(8)
        assert isinstance(seven, PoliteInstallationAPI)
        assert seven._cache is seven_again._cache
        assert seven._cache is not eight._cache
        app.forget_installation(7)
        assert app.client(7)._cache is not seven._cache
        assert app.client(8)._cache is eight._cache
