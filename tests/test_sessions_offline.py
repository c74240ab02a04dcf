"""Offline events through the real app and the real WebSocket client: recorded while no page of
the session follows the stream, sent in order with the unread count when a socket names its
session, acknowledged and not resent; only followed streams and notable kinds; the cap, the
TTL and a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.clock import ManualClock, SystemClock
from bot.config import Settings
from bot.events.bus import EventBus
from bot.events.message import Event
from bot.jira.events import SyncError, TicketUpdated
from bot.pipelines.events import PipelineCompleted, PipelineFailed, StepStarted
from bot.reviews.events import PrApproved, ReviewReceived
from storage.database import Database
from tests.conftest import AppClient, StartApp
from tests.helpers import make_settings
from tests.sessions_helpers import api, connect, disconnect, new_session, open_tabs, recorded
from web.keys import SCHEDULER, SERVICES

pytestmark = pytest.mark.both_databases

PR = "pr:octo/repo#3"


def failed(pipeline_id: int) -> PipelineFailed:
    return PipelineFailed(
        pipeline_id=pipeline_id, ticket="ACME-7", kind="agent", message="broke", error="broke"
    )


def completed(pipeline_id: int) -> PipelineCompleted:
    return PipelineCompleted(pipeline_id=pipeline_id, ticket="ACME-7")


async def publish(client: AppClient, stream: str, event: Event) -> int:
    event_id = await client.app[SERVICES].bus.publish(stream, event)
    assert event_id is not None
    return event_id


async def unread(client: AppClient, session_id: str) -> dict[str, object]:
    await recorded(client)
    answer: dict[str, object] = await api(
        client, "GET", f"/api/sessions/{session_id}/offline-events"
    )
    return answer


def event_ids(answer: dict[str, object]) -> list[int]:
    listed = answer["offline_events"]
    assert isinstance(listed, list)
    return [item["event"]["id"] for item in listed]


async def test_events_while_away_arrive_in_order_on_reconnect_and_not_again_once_acknowledged(
    client: AppClient,
) -> None:
    session_id = await new_session(client)
    await open_tabs(
        client, session_id, {"kind": "pipeline", "ref": "5"}, {"kind": "pr", "ref": "octo/repo#3"}
    )
    ws, before = await connect(client, session_id)
    assert [frame["type"] for frame in before] == ["session_restored"]
    live = await publish(client, "pipeline:5", failed(5))  # seen live: not recorded
    await recorded(client)
    await disconnect(client, ws, session_id)
    away = [
        await publish(client, PR, ReviewReceived(pr=1, batch_id=1, comments=2)),
        await publish(client, "pipeline:5", completed(5)),
        await publish(client, PR, PrApproved(pr=1, reviewer="ada")),
    ]
    await recorded(client)

    ws, before = await connect(client, session_id)
    restored, *offline = before
    assert restored["type"] == "session_restored"
    assert restored["stream"] == f"session:{session_id}"
    assert restored["id"] is None
    assert restored["data"]["unread"] == 3
    assert restored["data"]["tabs"] == [
        {"kind": "pipeline", "ref": "5"},
        {"kind": "pr", "ref": "octo/repo#3"},
    ]
    assert [frame["type"] for frame in offline] == ["offline_event"] * 3
    assert [frame["data"]["event"]["id"] for frame in offline] == away
    assert live not in [frame["data"]["event"]["id"] for frame in offline]
    assert {frame["data"]["unread"] for frame in offline} == {3}
    assert offline[1]["data"]["event"]["type"] == "pipeline_completed"
    assert offline[1]["data"]["event"]["data"]["pipeline_id"] == 5
    await ws.close()

    up_to = offline[1]["data"]["offline_id"]
    acknowledged = await api(
        client, "POST", f"/api/sessions/{session_id}/acknowledge-events", {"up_to": up_to}
    )
    assert acknowledged == {"acknowledged": 2, "unread": 1}
    ws, before = await connect(client, session_id)
    assert [frame["data"].get("event", {}).get("id") for frame in before[1:]] == [away[2]]
    await ws.close()
    last = before[1]["data"]["offline_id"]
    acknowledged = await api(
        client, "POST", f"/api/sessions/{session_id}/acknowledge-events", {"ids": [last]}
    )
    assert acknowledged == {"acknowledged": 1, "unread": 0}
    ws, before = await connect(client, session_id)
    assert [frame["type"] for frame in before] == ["session_restored"]
    await ws.close()


async def test_only_notable_events_on_followed_streams_not_seen_live_are_recorded(
    client: AppClient,
) -> None:
    session_id = await new_session(client)
    await open_tabs(
        client, session_id, {"kind": "pipeline", "ref": "5"}, {"kind": "ticket", "ref": "ACME-7"}
    )
    ws, _ = await connect(client, session_id, streams=["pipeline:5"])
    kept = [
        await publish(client, "pipeline:6", failed(6)),  # ACME-7's other pipeline
        await publish(client, "jira:ACME", SyncError(project="ACME", error="401")),
    ]
    await publish(client, "pipeline:5", failed(5))  # the socket follows it: seen live
    await publish(client, "pipeline:8", PipelineFailed(
        pipeline_id=8, ticket="OTHER-1", kind="agent", message="x", error="x"
    ))  # fmt: skip
    await publish(client, "pipeline:5", StepStarted(
        pipeline_id=5, ticket="ACME-7", step_id=1, phase="plan", agent="planner", attempt=1
    ))  # fmt: skip
    await publish(client, "jira:ACME", TicketUpdated(key="ACME-7"))
    await publish(client, "jira:OTHER", SyncError(project="OTHER", error="401"))
    await publish(client, PR, PrApproved(pr=1, reviewer="ada"))
    assert event_ids(await unread(client, session_id)) == kept
    await ws.close()


async def test_a_dashboard_tab_hears_every_stream_and_another_session_is_its_own(
    client: AppClient,
) -> None:
    dashboard, other = await new_session(client), await new_session(client)
    await open_tabs(client, dashboard, {"kind": "dashboard"})
    await open_tabs(client, other, {"kind": "pipeline", "ref": "9"})
    ids = [
        await publish(client, PR, PrApproved(pr=1, reviewer="ada")),
        await publish(client, "pipeline:9", failed(9)),
    ]
    assert event_ids(await unread(client, dashboard)) == ids
    assert event_ids(await unread(client, other)) == ids[1:]


async def test_each_session_keeps_its_newest_events_up_to_the_cap(
    start_app: StartApp, tmp_path: Path, database_url: str
) -> None:
    client = await start_app(
        make_settings(tmp_path, offline_events_per_session=3, database_url=database_url)
    )
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "5"})
    ids = [await publish(client, "pipeline:5", failed(5)) for _ in range(5)]
    answer = await unread(client, session_id)
    assert event_ids(answer) == ids[2:]
    assert answer["unread"] == 3


async def test_offline_events_expire_after_their_ttl_and_housekeeping_removes_them(
    start_app: StartApp, tmp_path: Path, manual_clock: ManualClock, database_url: str
) -> None:
    settings = make_settings(tmp_path, offline_events_ttl=3600.0, database_url=database_url)
    client = await start_app(settings, clock=manual_clock)
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "5"})
    first = await publish(client, "pipeline:5", failed(5))
    await recorded(client)
    await manual_clock.advance(1800)
    second = await publish(client, "pipeline:5", completed(5))
    assert event_ids(await unread(client, session_id)) == [first, second]
    await manual_clock.advance(1801)
    assert event_ids(await unread(client, session_id)) == [second]
    housekeeping = client.app[SCHEDULER].job("housekeeping")
    assert housekeeping is not None
    await housekeeping.function()
    assert await client.app[SERVICES].db.fetchval("SELECT COUNT(*) FROM offline_events") == 1


async def test_an_event_committed_just_before_a_crash_is_recorded_at_the_next_start(
    start_app: StartApp, settings: Settings
) -> None:
    """The process stopped between an event's commit and its recording: here the event is
    committed by a bus of its own on the same database while the app is not running."""
    client = await start_app(settings)
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "5"})
    await client.close()
    db = await Database.open(settings.database_url)
    try:
        bus = EventBus(db, SystemClock())
        await bus.start()
        committed = await bus.publish("pipeline:5", failed(5))
    finally:
        await db.close()
    client = await start_app(settings)
    answer = await api(client, "GET", f"/api/sessions/{session_id}/offline-events")
    assert event_ids(answer) == [committed]


async def test_restore_carries_the_unread_offline_events(client: AppClient) -> None:
    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "5"})
    event_id = await publish(client, "pipeline:5", failed(5))
    await recorded(client)
    restored = await api(client, "POST", f"/api/sessions/{session_id}/restore")
    assert [item["event"]["id"] for item in restored["offline_events"]] == [event_id]
    assert restored["unread"] == 1
    assert restored["offline_events"][0]["event"]["type"] == "pipeline_failed"


async def test_a_socket_naming_another_tokens_or_an_unknown_session_gets_an_error(
    client: AppClient,
) -> None:
    from tests.helpers import API_TOKEN
    from tests.sessions_helpers import next_json

    ws = await client.ws_connect("/ws", params={"token": API_TOKEN})
    await next_json(ws)
    await ws.send_json({"action": "subscribe", "streams": "*", "session": "nope"})
    answer = await next_json(ws)
    assert answer["control"] == "error"
    assert "nope" in answer["message"]
    session_id = await new_session(client)
    await ws.send_json({"action": "subscribe", "streams": "*", "session": session_id})
    assert (await next_json(ws))["type"] == "session_restored"
    assert (await next_json(ws))["control"] == "live"
    other = await new_session(client)
    await ws.send_json({"action": "subscribe", "streams": "*", "session": other})
    assert (await next_json(ws))["control"] == "error"
    await ws.close()


async def test_a_socket_may_name_its_session_in_the_query(client: AppClient) -> None:
    from tests.helpers import API_TOKEN
    from tests.sessions_helpers import next_json

    session_id = await new_session(client)
    await open_tabs(client, session_id, {"kind": "pipeline", "ref": "5"})
    ws = await client.ws_connect(
        "/ws", params={"token": API_TOKEN, "session": session_id, "streams": "pipeline:5"}
    )
    assert (await next_json(ws))["control"] == "hello"
    assert (await next_json(ws))["type"] == "session_restored"
    assert (await next_json(ws))["control"] == "live"
    await publish(client, "pipeline:5", failed(5))
    assert (await next_json(ws))["type"] == "pipeline_failed"
    assert event_ids(await unread(client, session_id)) == []
    await ws.close()


async def test_a_connected_page_sees_its_stream_live_and_is_told_at_once_of_another_tabs_event(
    client: AppClient,
) -> None:
    from tests.sessions_helpers import next_json

    session_id, other_session = await new_session(client), await new_session(client)
    tabs = ({"kind": "pipeline", "ref": "5"}, {"kind": "pipeline", "ref": "6"})
    await open_tabs(client, session_id, *tabs)
    await open_tabs(client, other_session, {"kind": "pipeline", "ref": "9"})
    page, _ = await connect(client, session_id, streams=["pipeline:5"])
    elsewhere, _ = await connect(client, other_session, streams=["pipeline:9"])
    anonymous, _ = await connect(client, None)

    live = await publish(client, "pipeline:5", failed(5))
    assert (await next_json(page))["id"] == live  # live, not a notification
    away = await publish(client, "pipeline:6", failed(6))  # a tab this socket does not show
    told = await next_json(page)
    marker = await publish(client, "pipeline:9", failed(9))

    assert told["type"] == "offline_event" and told["stream"] == f"session:{session_id}"
    assert (told["data"]["event"]["id"], told["data"]["unread"]) == (away, 1)
    assert event_ids(await unread(client, session_id)) == [away]  # still unread until read
    # Only the session's own sockets hear of it: not another session's, not one of no session.
    assert [(await next_json(anonymous))["id"] for _ in range(3)] == [live, away, marker]
    told_elsewhere = await next_json(elsewhere)
    assert (told_elsewhere["type"], told_elsewhere["id"]) == ("pipeline_failed", marker)
    for ws in (page, elsewhere, anonymous):
        await ws.close()

    await disconnect(client, page, session_id)
    again, before = await connect(client, session_id)
    assert [frame["data"]["event"]["id"] for frame in before[1:]] == [away]  # once, in order
    await again.close()
