"""Hostile input over HTTP gets an exact 4xx, never a 5xx (README: "a 4xx, never a 500"; issue 12):
lone UTF-16 surrogates, 5,000-digit ids, integers SQLite cannot hold and JSON nested 1,500 deep,
sent through the real server to signed webhooks and to every route that takes a body or an id.
After each, the server still answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from msgspec import inspect

from bot.config import Secret
from tests.conftest import AppClient, StartApp
from tests.helpers import (
    JIRA_WEBHOOK_SECRET,
    api_routes,
    auth_headers,
    body_structs,
    filled,
    github_headers,
    jira_headers,
    make_settings,
)
from web.errors import DB_INT_MAX
from web.keys import DISPATCHER

LONE_SURROGATE = "\\ud800"  # as JSON writes it: a high surrogate with no low one after it
FIVE_THOUSAND_DIGITS = "9" * 5000
NESTED_1500 = "[" * 1500 + "]" * 1500
# Routes older than web/bodies.py answer a malformed body with the code their clients know.
MALFORMED_CODES = {
    "/api/repositories": "bad_json",
    "/api/repositories/{id}/answers": "bad_json",
    "/api/tickets/{key}/repositories": "bad_json",
    "/api/clarifications/{clarification_id}/answer": "bad_json",
}
TAKES_NO_BODY = {"/api/deliveries/{id}/redeliver"}


async def still_answers(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/deliveries", headers=auth_headers())).status == 200


async def refusal(response: Any) -> tuple[int, str, str]:
    error = (await response.json())["error"]
    return response.status, error["code"], error["message"]


async def test_a_lone_surrogate_in_a_signed_jira_webhook_field_is_a_400(
    start_app: StartApp, tmp_path: Path
) -> None:
    client = await start_app(
        make_settings(tmp_path, jira_webhook_secret=Secret(JIRA_WEBHOOK_SECRET))
    )
    for field in ("issue_event_type_name", "comment"):
        body = f'{{"webhookEvent": "jira:issue_updated", "{field}": "x{LONE_SURROGATE}y"}}'.encode()
        response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
        status, code, message = await refusal(response)
        assert (status, code) == (400, "malformed_body"), field
        assert "lone UTF-16 surrogate" in message
    await still_answers(client)
    listed = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    assert listed["deliveries"] == []


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud800\\u0041", "\\udc00\\ud800"])
async def test_a_lone_surrogate_anywhere_in_a_signed_github_payload_is_a_400(
    client: AppClient, escape: str
) -> None:
    """Also in a field the intake skips: the payload is stored as text and parsed later."""
    body = f'{{"zen": "hi", "hook": {{"config": {{"note": "{escape}"}}}}}}'.encode()
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body)
    )
    assert (await refusal(response))[:2] == (400, "malformed_body")
    await still_answers(client)


async def test_a_surrogate_pair_in_a_signed_github_payload_is_accepted_and_worked(
    client: AppClient,
) -> None:
    body = b'{"zen": "\\ud83d\\ude00 and \\\\ud800 (a backslash, not an escape)"}'
    response = await client.post(
        "/webhooks/github", data=body, headers=github_headers("ping", body)
    )
    assert response.status == 202
    await client.app[DISPATCHER].drain()
    listed = await (await client.get("/api/deliveries", headers=auth_headers())).json()
    assert [delivery["status"] for delivery in listed["deliveries"]] == ["done"]


async def test_a_lone_surrogate_in_a_clone_url_is_a_400(every_feature: AppClient) -> None:
    body = '{"full_name": "octo/other", "clone_url": "https://github.com/octo/@.git"}'
    response = await every_feature.post(
        "/api/repositories", data=body.replace("@", LONE_SURROGATE), headers=auth_headers()
    )
    status, code, message = await refusal(response)
    assert (status, code) == (400, "bad_json")
    assert "lone UTF-16 surrogate" in message
    await still_answers(every_feature)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/api/repositories", (400, "malformed_body")),
        ("/api/deliveries/1/redeliver", (404, "not_found")),
        ("/api/events", (405, "method_not_allowed")),
    ],
    ids=["read by the route", "not read by the route", "no route for it"],
)
async def test_a_body_that_does_not_decompress_is_answered_and_closes_with_no_traceback(
    every_feature: AppClient,
    caplog: pytest.LogCaptureFixture,
    encoding: str,
    path: str,
    answer: tuple[int, str],
) -> None:
    """Found by tests/test_fuzz.py: after the answer aiohttp read the rest of the body to
    discard it, failed, logged an unhandled exception and dropped the kept-alive connection,
    so the client's next request on it got no answer."""
    headers = {**auth_headers(), "Content-Encoding": encoding}
    data = b"this is not " + encoding.encode()
    response = await every_feature.post(path, data=data, headers=headers)
    assert (await refusal(response))[:2] == answer
    assert response.headers["Connection"] == "close"
    await still_answers(every_feature)
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


@pytest.mark.parametrize("clone_url", ["https://[::1", "http://[x]/octo/repo.git"])
async def test_a_clone_url_with_a_broken_bracketed_host_is_a_400(
    every_feature: AppClient, clone_url: str
) -> None:
    body = {"full_name": "octo/other", "clone_url": clone_url}
    response = await every_feature.post("/api/repositories", json=body, headers=auth_headers())
    assert await refusal(response) == (400, "bad_parameter", "clone_url is not a URL")
    await still_answers(every_feature)


async def test_a_lone_surrogate_in_a_ticket_of_a_registration_is_a_400(
    every_feature: AppClient,
) -> None:
    body = '{"full_name": "octo/repo", "clone_url": "https://x/y.git", "tickets": ["AB-@"]}'
    response = await every_feature.post(
        "/api/repositories", data=body.replace("@", LONE_SURROGATE), headers=auth_headers()
    )
    assert (await refusal(response))[:2] == (400, "bad_json")
    await still_answers(every_feature)


async def test_a_lone_surrogate_in_the_repositories_of_a_ticket_is_a_400(
    every_feature: AppClient,
) -> None:
    body = '{"repositories": ["octo/@"]}'.replace("@", LONE_SURROGATE)
    response = await every_feature.put(
        "/api/tickets/AB-1/repositories", data=body, headers=auth_headers()
    )
    assert (await refusal(response))[:2] == (400, "bad_json")
    await still_answers(every_feature)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"@": 1}'.replace("@", LONE_SURROGATE), "holds a lone UTF-16 surrogate"),
        (NESTED_1500, "nests deeper than 32"),
        ('{"x": @}'.replace("@", NESTED_1500), "nests deeper than 32"),
        ('{"x": @}'.replace("@", "[" * 33 + "]" * 33), "nests deeper than 32"),
    ],
    ids=["a lone surrogate as a key", "1500 deep", "1500 deep in a field", "33 deep in a field"],
)
async def test_every_api_body_refuses_it_with_a_400(
    every_feature: AppClient, body: str, reason: str
) -> None:
    """Enumerated from the app: a route added later is covered too."""
    routes = api_routes(every_feature.app, {"POST", "PUT"})
    assert len(routes) >= 15
    for method, path in routes:
        if path in TAKES_NO_BODY:
            continue
        url = filled(path)
        response = await every_feature.request(method, url, data=body, headers=auth_headers())
        status, code, message = await refusal(response)
        assert (status, code) == (400, MALFORMED_CODES.get(path, "malformed_body")), path
        assert message.startswith(f"the body {reason}"), (path, message)
    await still_answers(every_feature)


async def test_a_5000_digit_id_on_every_route_with_an_id_never_answers_5xx(
    every_feature: AppClient,
) -> None:
    """Each placeholder of each route in turn, as 5,000 digits and as a ticket-shaped key. A
    stream or a ticket key is free text (200); a number is a 400, an unknown thing a 404."""
    routes = [
        (method, path)
        for method, path in api_routes(every_feature.app, {"GET", "POST", "PUT", "DELETE"})
        if "{" in path
    ]
    assert len(routes) >= 20
    for method, path in routes:
        for name in re.findall(r"\{([^}]+)\}", path):
            for value in (FIVE_THOUSAND_DIGITS, "AB-" + FIVE_THOUSAND_DIGITS):
                url = filled(path, hostile=name, value=value)
                response = await every_feature.request(method, url, headers=auth_headers())
                assert response.status < 500, (method, path, name)
                if response.status >= 400:
                    assert "code" in (await response.json())["error"]
    await still_answers(every_feature)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/deliveries/{id}/redeliver"),
        ("GET", "/api/pull-requests/{id}"),
        ("DELETE", "/api/repositories/{id}"),
        ("GET", "/api/pipelines/{id}"),
        ("POST", "/api/pipelines/{id}/pause"),
    ],
)
@pytest.mark.parametrize("value", [FIVE_THOUSAND_DIGITS, str(2**63), "0", "\u0661"])
async def test_an_id_beyond_the_database_in_the_path_is_a_400_bad_parameter(
    every_feature: AppClient, method: str, path: str, value: str
) -> None:
    url = path.replace("{id}", value)
    response = await every_feature.request(method, url, headers=auth_headers())
    assert (await refusal(response))[:2] == (400, "bad_parameter")


@pytest.mark.parametrize(
    "path",
    [
        "/api/deliveries?limit=",
        "/api/events?since=",
        "/api/tickets?offset=",
        "/api/pipelines?limit=",
        "/api/clarifications?limit=",
        "/api/streams/s/tokens?after=",
        "/api/agent-costs?pipeline_id=",
    ],
)
async def test_a_5000_digit_number_in_a_query_is_a_400_bad_parameter(
    every_feature: AppClient, path: str
) -> None:
    for value in (FIVE_THOUSAND_DIGITS, "\uff11", "1_0", " 1"):
        response = await every_feature.get(path + value, headers=auth_headers())
        assert (await refusal(response))[:2] == (400, "bad_parameter"), value
    await still_answers(every_feature)


@pytest.mark.parametrize("field", ["installation_id", "quota_bytes", "idle_ttl_seconds"])
@pytest.mark.parametrize("number", [2**63, 10**30, int(FIVE_THOUSAND_DIGITS[:4000])])
async def test_an_integer_of_2_63_or_more_in_a_registration_is_a_400(
    every_feature: AppClient, field: str, number: int
) -> None:
    body = {"full_name": "octo/other", "clone_url": "https://x/y.git", field: number}
    response = await every_feature.post(
        "/api/repositories", data=json.dumps(body), headers=auth_headers()
    )
    status, code, message = await refusal(response)
    assert (status, code) == (400, "bad_parameter")
    assert message.startswith(f"{field}: ")
    await still_answers(every_feature)


async def test_the_largest_integer_sqlite_holds_is_accepted(every_feature: AppClient) -> None:
    body = {"full_name": "octo/big", "clone_url": "https://x/y.git", "quota_bytes": DB_INT_MAX}
    response = await every_feature.post("/api/repositories", json=body, headers=auth_headers())
    assert response.status == 201
    assert (await response.json())["repository"]["quota_bytes"] == DB_INT_MAX


def int_types(info: inspect.Type) -> list[inspect.IntType]:
    """Every integer type inside `info` (fields, union members, items, keys and values)."""
    if isinstance(info, inspect.IntType):
        return [info]
    inner: list[inspect.Type] = []
    if isinstance(info, inspect.UnionType):
        inner = list(info.types)
    elif isinstance(info, inspect.StructType):
        inner = [field.type for field in info.fields]
    elif isinstance(info, inspect.DictType):
        inner = [info.key_type, info.value_type]
    elif isinstance(info, inspect.ListType | inspect.SetType | inspect.VarTupleType):
        inner = [info.item_type]
    elif isinstance(info, inspect.TupleType):
        inner = list(info.item_types)
    return [found for part in inner for found in int_types(part)]


def fits_sqlite(number: inspect.IntType) -> bool:
    low = number.ge if number.ge is not None else None if number.gt is None else number.gt + 1
    high = number.le if number.le is not None else None if number.lt is None else number.lt - 1
    return low is not None and high is not None and -DB_INT_MAX - 1 <= low <= high <= DB_INT_MAX


def test_every_integer_field_of_every_body_fits_an_sqlite_integer() -> None:
    """The class, not the instances: a new body with a bare `int` field fails here."""
    structs = body_structs()
    assert len(structs) >= 15
    unbounded = [
        struct.__qualname__
        for struct in structs
        for number in int_types(inspect.type_info(struct))
        if not fits_sqlite(number)
    ]
    assert unbounded == []
