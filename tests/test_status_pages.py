"""The status pages without a browser, through the real app: the login they need, 404s, what
they show, hostile text escaped, and the pull request's pause, resume and retry routes (what
the slash commands do). The dashboard's "needs a person" and the ticket and costs pages with a
running pipeline are in tests/pipelines/test_dashboard.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.config import Settings
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers, github_headers, load_json, page_html
from tests.reviews_scenario import REPO, Scenario
from tests.worktree_helpers import live_session
from web.keys import DISPATCHER
from web.pages.costs_page import installation_of, repository_of
from web.pages.formats import countdown, duration_text, size_text, time_left, when
from web.pages.pull_request_page import controls_for

HOSTILE = '<script>alert("review")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;review&#34;)&lt;/script&gt;"
PAGES = ["/", "/dashboard/state", "/pull-requests/1", "/tickets/ACME-1", "/worktrees", "/costs"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_needs_the_login(client: AppClient, path: str) -> None:
    response = await client.get(path, headers={"Accept": "text/html"})
    assert response.status == 401
    assert "/login?token=" in await response.text()


@pytest.mark.parametrize(
    ("path", "shown"),
    [("/pull-requests/999", "No pull request 999"), ("/tickets/acme-404", "No ticket ACME-404")],
)
async def test_an_unknown_pull_request_or_ticket_is_404(
    client: AppClient, path: str, shown: str
) -> None:
    assert shown in await page_html(client, path, status=404)


async def test_the_state_of_an_unknown_pull_request_is_404(client: AppClient) -> None:
    await page_html(client, "/pull-requests/999/state", status=404)


async def test_the_empty_pages_render_and_link_each_other(client: AppClient) -> None:
    for path in ("/", "/worktrees", "/costs"):
        html = await page_html(client, path)
        assert '<nav id="tabs" aria-label="open tabs"></nav>' in html, path
        assert 'href="/costs"' in html and 'href="/worktrees"' in html, path
        assert "<script>" not in html, path  # scripts come from /static only (the CSP)
    dashboard = await page_html(client, "/")
    assert "Nothing waits for a person." in dashboard
    assert dashboard.index('id="attention"') < dashboard.index("Recent deliveries")


async def test_a_delivery_is_listed_with_a_redeliver_button(client: AppClient) -> None:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    await client.app[DISPATCHER].drain()
    html = await page_html(client, "/")
    assert 'data-delivery="1"' in html
    assert 'data-api="/api/deliveries/1/redeliver"' in html
    redelivered = await client.post("/api/deliveries/1/redeliver", headers=auth_headers())
    assert redelivered.status == 202


async def reviewed(scenario: Scenario) -> None:
    """A hostile review comment gathered, worked by the scripted engine and answered."""
    await scenario.send("pull_request_review_comment", scenario.review_comment(HOSTILE))
    await scenario.advance(31)


async def test_the_pull_request_page_shows_batches_outcomes_iterations_and_cost(
    scenario: Scenario,
) -> None:
    await reviewed(scenario)
    await scenario.send("pull_request_review_comment", scenario.review_comment("rename x"))
    client = scenario.client
    assert client is not None
    html = await page_html(client, "/pull-requests/1")
    assert f"{REPO}#2" in html
    assert ESCAPED in html and HOSTILE not in html
    assert 'id="batch-1"' in html and "fixed" in html  # the scripted engine fixed it
    assert "12 passed" in html and "$0.2500" in html  # the iteration's tests and cost
    assert 'class="countdown"' in html  # the second comment's batch, due in 30 s
    assert 'data-api="/api/pull-requests/1/pause"' in html
    state = await page_html(client, "/pull-requests/1/state")
    assert 'id="batches"' in state and "<html" not in state


async def test_the_worktrees_page_shows_size_and_age_with_a_delete_button(
    start_app: StartApp, settings: Settings, tmp_path: Path
) -> None:
    clock = ManualClock()
    client = await start_app(settings, clock=clock)
    view = await live_session(client, tmp_path)
    await clock.advance(3 * 3600 + 120)
    html = await page_html(client, "/worktrees")
    assert f'data-session="{view.id}"' in html and "octo/app" in html
    assert "3 h 2 min" in html and "KiB" in html
    assert f'data-api="/api/worktrees/{view.id}" data-method="DELETE"' in html


def test_a_pull_request_offers_what_its_commands_would_do() -> None:
    open_pr = {"state": "open", "paused": False, "last_batch": None}
    assert controls_for(open_pr, reviews_on=True) == ["pause"]
    assert controls_for({**open_pr, "last_batch": {"status": "done"}}, reviews_on=True) == [
        "pause",
        "retry",
    ]
    assert controls_for({**open_pr, "last_batch": {"status": "running"}}, reviews_on=True) == [
        "pause"
    ]
    assert controls_for({**open_pr, "paused": True}, reviews_on=True) == ["resume"]
    assert controls_for({**open_pr, "state": "closed"}, reviews_on=True) == []
    assert controls_for(open_pr, reviews_on=False) == []


def test_times_are_rendered_for_the_browser_and_escaped() -> None:
    assert str(when("2026-11-24T15:40:00.123456Z")) == (
        '<time datetime="2026-11-24T15:40:00.123Z" class="" title="2026-11-24 15:40 UTC">'
        "2026-11-24 15:40 UTC</time>"
    )
    assert str(when("2024-01-01T10:00:00.000+0100")).startswith(
        '<time datetime="2024-01-01T09:00:00.000Z"'
    )
    assert str(when(HOSTILE)) == f"<span>{ESCAPED}</span>"


def test_sizes_and_durations_read_as_words() -> None:
    assert [size_text(n) for n in (0, 1536, 5 * 2**30)] == ["0 B", "1.5 KiB", "5.0 GiB"]
    assert [duration_text(s) for s in (0, 90, 3600, 93784)] == [
        "0 s",
        "1 min 30 s",
        "1 h",
        "1 d 2 h",
    ]


def test_a_call_belongs_to_the_installation_of_its_first_known_repository() -> None:
    owners = {"octo/app": 7, "octo/web": 8}
    assert installation_of(("other/x", "octo/web", "octo/app"), owners) == 8
    assert installation_of((repository_of("octo/app#12"),), owners) == 7
    assert installation_of(("other/x",), owners) is None


def test_a_countdown_starts_with_the_servers_count_in_the_scripts_words() -> None:
    now = datetime(2026, 11, 24, 15, 40, tzinfo=UTC)
    due = "2026-11-24T15:40:20.000000Z"
    assert ">in 20 s</time>" in str(countdown(due, now))
    assert 'class="countdown"' in str(countdown(due, now))
    assert [time_left(s) for s in (-3, 0.2, 59, 125, 7260)] == [
        "now",
        "in 1 s",
        "in 59 s",
        "in 2 min 05 s",
        "in 2 h 1 min",
    ]
