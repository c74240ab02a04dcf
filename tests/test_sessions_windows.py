"""Two browser windows of one session writing at once, through the real app: tabs are
last-write-wins and never a mix of both lists; each window's page keeps its own UI state (the
page's PATCH is merged in); no request is a 500; the other window gets the result when it
restores or its socket connects again."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import AppClient
from tests.sessions_helpers import api, connect, new_session

ROUNDS = 12
WINDOW_A_TABS = [{"kind": "pipeline", "ref": "1"}, {"kind": "pr", "ref": "octo/repo#3"}]
WINDOW_B_TABS = [{"kind": "ticket", "ref": "ACME-7"}, {"kind": "dashboard", "ref": None}]


async def test_tabs_written_by_two_windows_at_once_end_as_one_whole_list(
    client: AppClient,
) -> None:
    session_id = await new_session(client)
    path = f"/api/sessions/{session_id}/tabs"
    for _ in range(ROUNDS):
        answers = await asyncio.gather(
            api(client, "PUT", path, {"tabs": WINDOW_A_TABS}),
            api(client, "PUT", path, {"tabs": WINDOW_B_TABS}),
        )
        assert [answer["tabs"] for answer in answers] == [WINDOW_A_TABS, WINDOW_B_TABS]
        kept = (await api(client, "GET", path))["tabs"]
        assert kept in (WINDOW_A_TABS, WINDOW_B_TABS)

    restored = await api(client, "POST", f"/api/sessions/{session_id}/restore", {})
    ws, frames = await connect(client, session_id)
    await ws.close()
    assert restored["tabs"] == kept
    assert frames[0]["type"] == "session_restored" and frames[0]["data"]["tabs"] == kept


async def window(client: AppClient, session_id: str, page: str, count: int) -> dict[str, Any]:
    """One window saving its page's UI state `count` times, as its script does; the last."""
    part: dict[str, Any] = {}
    for number in range(count):
        part = {"open": [f"output-{number}"], "selected": f"step-{number}", "fields": {}}
        body = {"pages": {page: part}}
        await api(client, "PATCH", f"/api/sessions/{session_id}/ui-state", body)
    return part


async def test_two_windows_on_two_pages_both_keep_their_page_state(client: AppClient) -> None:
    session_id = await new_session(client)
    address = f"/api/sessions/{session_id}/ui-state"
    await api(client, "PUT", address, {"ui_state": {"theme": "dark"}})
    last_a, last_b = await asyncio.gather(
        window(client, session_id, "/pipelines/1", ROUNDS),
        window(client, session_id, "/tickets/ACME-7", ROUNDS),
    )

    kept = (await api(client, "GET", address))["ui_state"]
    assert kept["pages"] == {"/pipelines/1": last_a, "/tickets/ACME-7": last_b}
    assert kept["theme"] == "dark"
    forgotten = await api(client, "PATCH", address, {"pages": {"/pipelines/1": None}})
    assert forgotten["ui_state"]["pages"] == {"/tickets/ACME-7": last_b}
    restored = await api(client, "POST", f"/api/sessions/{session_id}/restore", {})
    assert restored["ui_state"] == forgotten["ui_state"]


async def test_whole_ui_states_written_at_once_end_as_one_of_them(client: AppClient) -> None:
    session_id = await new_session(client)
    address = f"/api/sessions/{session_id}/ui-state"
    ours, theirs = {"pages": {"/": {"fields": {"f": "a"}}}}, {"pages": {"/costs": {}}, "x": 1}
    for _ in range(ROUNDS):
        await asyncio.gather(
            api(client, "PUT", address, {"ui_state": ours}),
            api(client, "PUT", address, {"ui_state": theirs}),
        )
        assert (await api(client, "GET", address))["ui_state"] in (ours, theirs)


async def test_the_pages_a_session_keeps_are_the_ones_used_last(client: AppClient) -> None:
    session_id = await new_session(client)
    address = f"/api/sessions/{session_id}/ui-state"
    for number in range(45):
        await api(client, "PATCH", address, {"pages": {f"/pipelines/{number}": {"n": number}}})
    await api(client, "PATCH", address, {"pages": {"/pipelines/10": {"n": 10}}})
    pages = list((await api(client, "GET", address))["ui_state"]["pages"])
    assert len(pages) == 40
    assert pages[-1] == "/pipelines/10" and pages[0] == "/pipelines/5"


async def test_bad_page_patches_are_refused_with_4xx(client: AppClient) -> None:
    session_id = await new_session(client)
    address = f"/api/sessions/{session_id}/ui-state"
    for body in ({"pages": []}, {"pages": {"": {}}}, {"pages": {"/": 3}}, {"ui_state": {}}):
        answer = await api(client, "PATCH", address, body, status=400)
        assert answer["error"]["code"] in ("invalid_field", "malformed_body"), body
    too_big = {"pages": {"/": {"text": "x" * 20_000}}}
    assert (await api(client, "PATCH", address, too_big, status=413))["error"]["code"] == (
        "too_large"
    )
    unknown = "/api/sessions/nope/ui-state"
    assert (await api(client, "PATCH", unknown, {"pages": {}}, status=404))["error"]["code"] == (
        "not_found"
    )
