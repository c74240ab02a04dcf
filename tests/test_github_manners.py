"""GitHub API manners through the real gidgethub client against the fake: waits and retries."""

from __future__ import annotations

import http
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import gidgethub
import pytest
from gidgethub import sansio

from bot.clock import ManualClock
from bot.config import Secret
from bot.github.app import GitHubApp
from bot.github.manners import (
    ApiManners,
    PoliteInstallationAPI,
    SelfApprovalRefused,
    is_final_graphql_refusal,
    is_final_refusal,
)
from tests.fakes.github import FakeGitHub

REPO = "octo/repo"
COMMENTS = r"/repos/octo/repo/issues/1/comments"


class RecordingClock(ManualClock):
    """Sleeping moves the clock at once, and is recorded: waits are seen, not spent."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        await self.advance(seconds)


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
async def fake(app_key: tuple[str, str], clock: RecordingClock) -> AsyncIterator[FakeGitHub]:
    github = FakeGitHub(app_id=4242, public_key_pem=app_key[1], now=clock.now)
    await github.start()
    github.add_pull_request(REPO, {"number": 1, "head": {"sha": "a" * 40}})
    yield github
    await github.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def polite(
    fake: FakeGitHub, key: str, clock: RecordingClock, session: aiohttp.ClientSession, **kw: float
) -> PoliteInstallationAPI:
    app = GitHubApp(
        app_id=str(fake.app_id),
        private_key=Secret(key),
        api_url=fake.base_url,
        session=session,
        clock=clock,
    )
    return ApiManners(clock, **kw).client(app, 7)


async def test_secondary_rate_limit_waits_for_retry_after(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    fake.script_failure("POST", COMMENTS, status=403, headers={"Retry-After": "7"})
    gh = polite(fake, app_key[0], clock, session, write_spacing_s=0)
    posted = await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": "hi"})
    assert clock.slept == [7.0]
    assert len(fake.calls_to("POST", COMMENTS)) == 2
    assert len(fake.comments_on(REPO, 1)) == 1 and posted["body"] == "hi"


async def test_primary_rate_limit_waits_until_the_reset(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    reset = clock.now() + timedelta(seconds=120)
    fake.script_failure(
        "GET",
        r"/repos/octo/repo/pulls/1",
        status=403,
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(reset.timestamp())),
        },
        message="API rate limit exceeded",
    )
    gh = polite(fake, app_key[0], clock, session)
    pull = await gh.getitem(f"/repos/{REPO}/pulls/1")
    assert pull["number"] == 1
    assert clock.slept == [120.0]


async def test_server_errors_are_retried_with_backoff_then_given_up(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    fake.script_failure("GET", r"/repos/octo/repo/pulls/1", status=502, times=2)
    gh = polite(fake, app_key[0], clock, session)
    await gh.getitem(f"/repos/{REPO}/pulls/1")
    assert clock.slept == [1.0, 2.0]
    fake.script_failure("GET", r"/repos/octo/repo/pulls/1", status=503, times=10)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem(f"/repos/{REPO}/pulls/1")
    assert clock.slept[2:] == [1.0, 2.0, 4.0, 8.0]


async def test_client_errors_are_not_retried(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    gh = polite(fake, app_key[0], clock, session)
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(f"/repos/{REPO}/pulls/99")
    assert clock.slept == []


async def test_content_creating_calls_are_spaced_per_installation(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    gh = polite(fake, app_key[0], clock, session, write_spacing_s=1.0)
    for text in ("a", "b", "c"):
        await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": text})
    await gh.getitem(f"/repos/{REPO}/pulls/1")  # reads are not spaced
    assert clock.slept == [1.0, 1.0]


async def test_biagent_never_approves(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    gh = polite(fake, app_key[0], clock, session)
    with pytest.raises(SelfApprovalRefused):
        await gh.post(f"/repos/{REPO}/pulls/1/reviews", data={"event": "APPROVE"})
    assert fake.calls_to("POST", f"/repos/{REPO}/pulls/1/reviews") == []


async def test_a_post_that_gets_a_server_error_is_not_repeated(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    # GitHub can answer 502 after it created the comment: a blind retry would post it twice.
    fake.script_failure("POST", COMMENTS, status=502, after_handling=True)
    gh = polite(fake, app_key[0], clock, session, write_spacing_s=0)
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": "hi"})
    assert len(fake.calls_to("POST", COMMENTS)) == 1
    assert len(fake.comments_on(REPO, 1)) == 1 and clock.slept == []


async def test_a_reaction_is_repeated_after_a_server_error(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    posted = await polite(fake, app_key[0], clock, session, write_spacing_s=0).post(
        f"/repos/{REPO}/issues/1/comments", data={"body": "hi"}
    )
    reactions = rf"/repos/octo/repo/issues/comments/{posted['id']}/reactions"
    fake.script_failure("POST", reactions, status=502)
    gh = polite(fake, app_key[0], clock, session, write_spacing_s=0)
    await gh.post(reactions, data={"content": "eyes"})  # GitHub keeps one per user: safe
    assert clock.slept == [1.0] and len(fake.reactions) == 1


def test_only_lasting_client_errors_are_final() -> None:
    refused = gidgethub.BadRequest(http.HTTPStatus(422), "Body is too long")
    locked = gidgethub.BadRequest(
        http.HTTPStatus(403), "Unable to create comment because issue is locked."
    )
    limited = gidgethub.BadRequest(http.HTTPStatus(403), "You have exceeded a secondary rate limit")
    broken = gidgethub.GitHubBroken(http.HTTPStatus(502))
    assert is_final_refusal(refused) and is_final_refusal(locked)
    assert not is_final_refusal(limited) and not is_final_refusal(broken)


async def test_a_graphql_call_leaves_the_rest_rate_limit_as_it_was(
    fake: FakeGitHub,
    app_key: tuple[str, str],
    clock: RecordingClock,
    session: aiohttp.ClientSession,
) -> None:
    gh = polite(fake, app_key[0], clock, session)
    rest = sansio.RateLimit(limit=5000, remaining=17, reset_epoch=clock.now().timestamp() + 60)
    gh.rate_limit = rest
    query = "query { viewer { login } }"  # the fake answers it with a GraphQL error
    with pytest.raises(gidgethub.QueryError):
        await gh.graphql(query)
    data = await gh.graphql(
        "query($o: String!, $n: String!, $x: Int!) { repository(owner: $o, name: $n) {"
        " pullRequest(number: $x) { reviewThreads(first: 10) { nodes { id } } } } }",
        o="octo",
        n="repo",
        x=1,
    )
    assert data["repository"]["pullRequest"]["reviewThreads"]["nodes"] == []
    assert gh.rate_limit is rest


def test_only_lasting_graphql_refusals_are_final() -> None:
    def query_error(*types: str | None) -> gidgethub.QueryError:
        errors = [{"message": "m"} | ({"type": t} if t else {}) for t in types]
        return gidgethub.QueryError({"data": None, "errors": errors})

    assert is_final_graphql_refusal(query_error("NOT_FOUND"))
    assert is_final_graphql_refusal(query_error("FORBIDDEN", "NOT_FOUND"))
    assert is_final_graphql_refusal(
        gidgethub.BadGraphQLRequest(http.HTTPStatus(422), {"message": "m"})
    )
    for passing in (
        query_error("RATE_LIMITED"),
        query_error(None),  # "Something went wrong while executing your query"
        query_error("NOT_FOUND", "RATE_LIMITED"),
        gidgethub.BadGraphQLRequest(http.HTTPStatus(403), {"message": "secondary rate limit"}),
        gidgethub.BadGraphQLRequest(http.HTTPStatus(429), {"message": "m"}),
        gidgethub.GraphQLAuthorizationFailure({"message": "Bad credentials"}),
        gidgethub.GraphQLResponseTypeError("text/html", "<html>502</html>"),
        gidgethub.GraphQLException("Response contained no data", b""),
    ):
        assert not is_final_graphql_refusal(passing), passing
