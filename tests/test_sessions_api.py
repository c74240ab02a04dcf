"""Browser sessions through the real app: the login cookie, tabs and UI state kept across a
restart, restore from another client, another token's sessions, bad bodies."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bot.agents.tokens import TokenCoalescer, TokenSequence
from bot.clock import ManualClock
from bot.config import Secret, Settings
from bot.pipelines.events import PipelineFailed, stream_of
from storage import agent_runs, claude_sessions, pipelines, pull_requests
from tests.conftest import AppClient, StartApp
from tests.helpers import API_TOKEN, auth_headers, make_settings
from tests.sessions_helpers import api, new_session, open_tabs
from web.keys import SERVICES, SESSIONS
from web.session_cookie import SESSION_COOKIE

pytestmark = pytest.mark.both_databases

LOOPBACK = (ip_network("127.0.0.1/32"),)


async def login(client: AppClient, **query: str) -> aiohttp.ClientResponse:
    return await client.get("/login", params={"token": API_TOKEN, **query}, allow_redirects=False)


async def test_login_sets_a_session_cookie_the_page_reads_its_session_from(
    client: AppClient,
) -> None:
    response = await login(client)
    assert response.status == 303
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain http on loopback
    current = await api(client, "GET", "/api/sessions/current")
    assert current["session"]["id"] == cookie.value
    assert current["session"]["unread"] == 0


async def test_logging_in_again_keeps_the_browsers_session(client: AppClient) -> None:
    first = (await login(client)).cookies[SESSION_COOKIE].value
    second = (await login(client)).cookies[SESSION_COOKIE].value
    assert first == second


async def test_the_session_cookie_is_secure_behind_a_trusted_https_proxy(
    start_app: StartApp, tmp_path: Path, database_url: str
) -> None:
    client = await start_app(
        make_settings(tmp_path, trusted_proxies=LOOPBACK, database_url=database_url)
    )
    response = await client.get(
        "/login",
        params={"token": API_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert response.cookies[SESSION_COOKIE]["secure"]


async def test_another_device_logs_in_to_the_same_session(client: AppClient) -> None:
    session_id = await new_session(client)
    client.session.cookie_jar.clear()
    response = await login(client, session=session_id)
    assert response.cookies[SESSION_COOKIE].value == session_id
    unknown = await login(client, session="no-such-session")
    assert unknown.status == 404


async def test_without_a_session_cookie_there_is_no_current_session(client: AppClient) -> None:
    answer = await api(client, "GET", "/api/sessions/current", status=404)
    assert answer["error"]["code"] == "no_session"
    made = await client.post("/api/sessions", headers=auth_headers())
    assert made.status == 201
    assert made.cookies[SESSION_COOKIE].value == (await made.json())["session"]["id"]


async def test_tabs_and_ui_state_round_trip_and_survive_a_restart(
    start_app: StartApp, settings: Settings
) -> None:
    client = await start_app(settings)
    session_id = await new_session(client)
    tabs = [
        {"kind": "dashboard", "ref": None},
        {"kind": "pipeline", "ref": "12"},
        {"kind": "pr", "ref": "octo/repo#3"},
        {"kind": "ticket", "ref": "ACME-7"},
    ]
    ui_state = {"filters": {"status": ["failed"]}, "collapsed": ["costs"], "selected_step": 4}
    assert (await api(client, "PUT", f"/api/sessions/{session_id}/tabs", {"tabs": tabs})) == {
        "tabs": tabs
    }
    await api(client, "PUT", f"/api/sessions/{session_id}/ui-state", {"ui_state": ui_state})
    await client.close()
    client = await start_app(settings)
    assert (await api(client, "GET", f"/api/sessions/{session_id}/tabs"))["tabs"] == tabs
    kept = await api(client, "GET", f"/api/sessions/{session_id}/ui-state")
    assert kept["ui_state"] == ui_state


async def test_restore_from_another_client_gets_tabs_state_and_what_they_show_now(
    start_app: StartApp, settings: Settings, manual_clock: ManualClock
) -> None:
    client = await start_app(settings, clock=manual_clock)
    services = client.app[SERVICES]
    now = manual_clock.now()
    pipeline = await pipelines.create_pipeline(
        services.db, ticket_key="ACME-7", repositories=["octo/repo"], trigger="api",
        created_by="mia", now=now,
    )  # fmt: skip
    await pull_requests.upsert_pull_request(
        services.db, repository="octo/repo", number=3, installation_id=1, github_id=None,
        title="Say hello", author_login="mia", clone_url="https://github.com/octo/repo.git",
        head_ref="hello", head_sha="a" * 40, base_ref="main", state="open", now=now,
    )  # fmt: skip
    session_id = await new_session(client)
    await open_tabs(
        client, session_id, {"kind": "pipeline", "ref": str(pipeline.id)},
        {"kind": "pr", "ref": "octo/repo#3"}, {"kind": "pipeline", "ref": "999"},
    )  # fmt: skip
    await api(client, "PUT", f"/api/sessions/{session_id}/ui-state", {"ui_state": {"a": 1}})
    failed = PipelineFailed(
        pipeline_id=pipeline.id, ticket="ACME-7", kind="budget", message="over", error="over"
    )
    await services.bus.publish(
        stream_of(pipeline.id),
        failed,
        together_with=[  # only a running pipeline fails
            pipelines.pipeline_status(pipeline.id, "running", now=now),
            pipelines.pipeline_failure(
                pipeline.id, kind="budget", message="over", phase="plan", detail={}, now=now
            ),
        ],
    )
    async with aiohttp.ClientSession(headers=auth_headers()) as other:
        response = await other.post(client.make_url(f"/api/sessions/{session_id}/restore"))
        restored = await response.json()
    assert response.status == 200, restored
    assert [tab["ref"] for tab in restored["tabs"]] == [str(pipeline.id), "octo/repo#3", "999"]
    assert restored["ui_state"] == {"a": 1}
    assert [(p["id"], p["status"]) for p in restored["pipelines"]] == [(pipeline.id, "failed")]
    assert restored["pipelines"][0]["failure"]["kind"] == "budget"
    assert [(pr["repository"], pr["number"]) for pr in restored["pull_requests"]] == [
        ("octo/repo", 3)
    ]
    assert (restored["epoch"], restored["last_id"]) == (services.bus.epoch, services.bus.last_id)
    assert restored["token_catchup"] == []


async def test_a_session_of_another_token_is_not_found(
    start_app: StartApp, tmp_path: Path, database_url: str
) -> None:
    client = await start_app(make_settings(tmp_path, database_url=database_url))
    session_id = await new_session(client)
    await client.close()
    other_token = "another-token-0123456789"
    client = await start_app(
        make_settings(tmp_path, api_token=Secret(other_token), database_url=database_url)
    )
    headers = {"Authorization": f"Bearer {other_token}"}
    for method, path in [
        ("GET", f"/api/sessions/{session_id}"),
        ("GET", f"/api/sessions/{session_id}/tabs"),
        ("GET", f"/api/sessions/{session_id}/ui-state"),
        ("POST", f"/api/sessions/{session_id}/restore"),
        ("GET", f"/api/sessions/{session_id}/offline-events"),
    ]:
        response = await client.request(method, path, headers=headers)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"]["code"] == "not_found"
    response = await client.put(
        f"/api/sessions/{session_id}/tabs", json={"tabs": []}, headers=headers
    )
    assert response.status == 404
    await client.app[SESSIONS].prune()  # housekeeping forgets what no one can reach
    assert await client.app[SERVICES].db.fetchval("SELECT COUNT(*) FROM sessions") == 0


async def test_bad_bodies_are_400s_naming_the_field(client: AppClient) -> None:
    session_id = await new_session(client)
    tabs = f"/api/sessions/{session_id}/tabs"
    cases = [
        (tabs, {"tabs": [{"kind": "spreadsheet", "ref": "1"}]}, "tabs[0].kind"),
        (tabs, {"tabs": [{"kind": "pipeline", "ref": "twelve"}]}, "tabs[0].ref"),
        (tabs, {"tabs": [{"kind": "pr", "ref": "octo/repo"}]}, "tabs[0].ref"),
        (tabs, {"tabs": [{"kind": "ticket", "ref": "acme 7"}]}, "tabs[0].ref"),
        (tabs, {"tabs": [{"kind": "dashboard", "ref": "x"}]}, "tabs[0].ref"),
        (tabs, {"tabs": [{"kind": "dashboard"}, {"kind": "dashboard"}]}, "tabs[1]"),
        (tabs, {"tabs": [{"kind": "pipeline", "ref": "1", "color": "red"}]}, "tabs[0]"),
        (tabs, {"tabs": "dashboard"}, "tabs"),
        (f"/api/sessions/{session_id}/ui-state", {"ui_state": [1, 2]}, "ui_state"),
        (f"/api/sessions/{session_id}/ui-state", {"filters": {}}, ""),
    ]
    for path, body, field in cases:
        answer = await api(client, "PUT", path, body, status=400)
        assert answer["error"]["message"].startswith(field), (body, answer)
    ack = f"/api/sessions/{session_id}/acknowledge-events"
    for body in ({}, {"up_to": 0}, {"ids": ["1"]}, {"up_to": 2**63}):
        await api(client, "POST", ack, body, status=400)
    restore = f"/api/sessions/{session_id}/restore"
    await api(client, "POST", restore, {"token_after": {"pipeline:1": -1}}, status=400)
    assert (await api(client, "GET", tabs))["tabs"] == []


async def test_a_ui_state_over_its_cap_is_refused(client: AppClient) -> None:
    session_id = await new_session(client)
    path = f"/api/sessions/{session_id}/ui-state"
    answer = await api(client, "PUT", path, {"ui_state": {"notes": "x" * 20_000}}, status=413)
    assert answer["error"]["code"] == "too_large"
    assert (await api(client, "GET", path))["ui_state"] == {}


async def test_a_session_id_that_cannot_be_one_is_a_404(client: AppClient) -> None:
    for path in ("/api/sessions/a%20b/tabs", "/api/sessions/" + "x" * 65):
        response = await client.get(URL(path, encoded=True), headers=auth_headers())
        assert response.status == 404


async def test_restore_catches_up_the_tokens_of_the_step_running_on_a_tab(
    start_app: StartApp, settings: Settings, manual_clock: ManualClock
) -> None:
    """The running step's text from its start (an earlier step's is not its), or from the seq
    the page says it holds."""
    client = await start_app(settings, clock=manual_clock)
    db, stream = client.app[SERVICES].db, "pipeline:7"
    sequence = TokenSequence(db)
    earlier = TokenCoalescer(sequence, client.app[SERVICES].bus, manual_clock, stream)
    await earlier.add("the plan was ")
    await earlier.flush()
    await manual_clock.advance(1)
    conversation = await claude_sessions.create(
        db, session_key="pipeline:7/step:2/attempt:1", agent="implementer", model="m",
        pipeline_id=7, step_id=2, pr=None, now=manual_clock.now(),
    )  # fmt: skip
    run = await agent_runs.start(
        db, session_id=conversation.id, agent="implementer", stream=stream, now=manual_clock.now()
    )
    await manual_clock.advance(1)
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "7"})
    path = f"/api/sessions/{session_id}/restore"
    (before_any_text,) = (await api(client, "POST", path))["token_catchup"]
    assert (before_any_text["text"], before_any_text["block"]) == ("", None)  # not the plan's
    running = TokenCoalescer(sequence, client.app[SERVICES].bus, manual_clock, stream)
    seqs = []
    for text in ("I edit ", "greet.py ", "now"):
        await running.add(text)
        seqs.append(await running.flush())
    (caught_up,) = (await api(client, "POST", path))["token_catchup"]
    assert (caught_up["stream"], caught_up["run_id"], caught_up["agent"]) == (
        stream, run.id, "implementer"
    )  # fmt: skip
    assert caught_up["text"] == "I edit greet.py now"
    assert (caught_up["from_seq"], caught_up["last_seq"]) == (seqs[0], seqs[-1])
    block = caught_up["block"]  # the running block, as the WebSocket's token_catchup has it
    assert (block["block"], block["state"], block["last_seq"]) == (seqs[0], "running", seqs[-1])
    tail = "".join(frame["text"] for frame in block["tail"])
    assert block["snapshot"]["text"] + tail == "I edit greet.py now"
    body = {"token_after": {stream: seqs[1]}}
    (caught_up,) = (await api(client, "POST", path, body))["token_catchup"]
    assert caught_up["text"] == "now"
