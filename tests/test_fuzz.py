"""Property-based fuzzing (hypothesis) of the one input layer through the real server on
loopback (issue 12, "The project checks itself"): signed GitHub and JIRA webhooks built from the
real payloads with fields mutated, every API route that takes a body, an id or a query, and the
WebSocket's frames.

The property, for every request and frame: no 5xx; no connection dropped without an answer; a
WebSocket closed only with a code for what the client sent (1000, 1007, 1008, 1009), never 1011;
and no traceback logged by aiohttp or web/ (tests/fuzz_tally.py's watch).

`make test` runs `DEFAULT_EXAMPLES` examples of each property, about a minute in all;
`BIAGENT_FUZZ_EXAMPLES=N` runs N of each. The run ends with one line of figures (requests,
frames, seconds, 5xx, drops, bad closes, tracebacks).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from bot.config import Secret
from tests.conftest import AppClient, StartApp
from tests.fuzz_tally import TALLY, TracebackWatch
from tests.fuzz_values import (
    as_bytes,
    header_texts,
    json_bodies,
    json_values,
    mostly,
    mutated_payloads,
    path_segments,
    payloads,
    texts,
)
from tests.helpers import (
    API_TOKEN,
    JIRA_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    api_routes,
    auth_headers,
    body_structs,
    make_settings,
    sign,
)
from web.keys import DISPATCHER
from web.ws import Frame

DEFAULT_EXAMPLES = 800
EXAMPLES = int(os.environ.get("BIAGENT_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# The ini's 120 s guards `make test`; a long run gets a tenth of a second per example on top.
pytestmark = pytest.mark.timeout(120 + EXAMPLES // 10)

GITHUB_EVENTS = sorted({event for event, _ in payloads("github")})
FIELD_NAMES = st.sampled_from(sorted({n for s in body_structs() for n in s.__struct_fields__}))
# A new delivery id each time (hypothesis' own uuids() repeat themselves, on purpose); a
# redelivery is drawn as such.
FRESH_IDS = st.builds(lambda: str(uuid.uuid4()))
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
# aiohttp's limit on a request line. A longer one is refused (400) by aiohttp's parser before
# any of our code runs, and logged there with a traceback, which web/server_logs.py's filter
# (installed by `python -m bot`, not by the app factory) makes one warning line: tested in
# tests/test_server_logs.py, not by this fuzz test of the input layer.
MAX_LINE = 8190
# Closes that answer what the client sent: normal, not text, policy, too big.
CLIENT_CLOSES = {
    WSCloseCode.OK,
    WSCloseCode.INVALID_TEXT,
    WSCloseCode.POLICY_VIOLATION,
    WSCloseCode.MESSAGE_TOO_BIG,
}


def query_names() -> list[str]:
    """Every query parameter a route of web/ reads, found in its source."""
    modules = (Path(__file__).parents[1] / "web").rglob("*.py")
    source = "\n".join(path.read_text(encoding="utf-8") for path in modules)
    found = re.findall(r'query(?:_int\(request, |\.get\(|\.getall\()"(\w+)"', source)
    return sorted(set(found))


@pytest.fixture
def watch() -> Iterator[TracebackWatch]:
    """Tracebacks logged by the web edge, and the test's time added to the tally."""
    handler = TracebackWatch()
    logging.getLogger().addHandler(handler)
    started = time.perf_counter()
    yield handler
    TALLY.seconds += time.perf_counter() - started
    logging.getLogger().removeHandler(handler)


def no_tracebacks(watch: TracebackWatch, what: object) -> None:
    caught = watch.take()
    assert not caught, f"{what} logged a traceback:\n" + "\n".join(caught)


async def answer_to(
    client: AppClient, method: str, target: str, *, data: bytes = b"", **options: Any
) -> tuple[int, bytes]:
    """Send one request exactly as given (`target` is already percent-encoded) and read the
    whole answer; a 5xx or a connection closed without an answer fails the test."""
    url = URL(str(client.make_url("/")).rstrip("/") + target, encoded=True)
    TALLY.requests += 1
    try:
        async with client.session.request(
            method, url, data=data, allow_redirects=False, **options
        ) as response:
            status, body = response.status, await response.read()
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as error:
        TALLY.dropped += 1
        raise AssertionError(f"{method} {target} got no answer: {error!r}") from None
    TALLY.answers[f"{status // 100}xx"] += 1
    if status >= 500:
        TALLY.server_errors += 1
        raise AssertionError(f"{method} {target} answered {status}: {body[:500]!r}")
    return status, body


@st.composite
def wire_encodings(draw: st.DrawFn, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """`raw` as sent: as it is, gzip'd, deflated, or labelled gzip without being it."""
    how = draw(st.sampled_from(["identity"] * 5 + ["gzip", "deflate", "not gzip"]))
    if how == "gzip":
        return gzip.compress(raw), {"Content-Encoding": "gzip"}
    if how == "deflate":
        return zlib.compress(raw), {"Content-Encoding": "deflate"}
    if how == "not gzip":
        return raw, {"Content-Encoding": "gzip"}
    return raw, {}


@st.composite
def signatures(draw: st.DrawFn, raw: bytes, secret: str) -> str | None:
    """Mostly the right signature of the (uncompressed) body, now and then a wrong one."""
    how = draw(st.sampled_from(["right"] * 12 + ["missing", "other secret", "any text"]))
    if how == "missing":
        return None
    if how == "other secret":
        return sign(raw, "not-the-secret")
    if how == "any text":
        return draw(header_texts())
    return sign(raw, secret)


@st.composite
def signed_requests(
    draw: st.DrawFn, raw: bytes, secret: str, signature_header: str
) -> tuple[bytes, dict[str, str]]:
    body, headers = draw(wire_encodings(raw))
    signature = draw(signatures(raw, secret))
    if signature is not None:
        headers[signature_header] = signature
    return body, headers


@st.composite
def github_deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A signed POST /webhooks/github: a real payload mutated, or any bytes, as JSON or as the
    form GitHub sends when a hook is set to `application/x-www-form-urlencoded`."""
    event, payload = draw(mutated_payloads("github"))
    raw = draw(mostly(json_bodies(st.just(payload)), st.binary(max_size=200)))
    content_type = draw(mostly(st.just("application/json"), st.sampled_from(CONTENT_TYPES)))
    if content_type == "application/x-www-form-urlencoded":
        raw = b"payload=" + quote_from_bytes(raw).encode()
    body, headers = draw(signed_requests(raw, WEBHOOK_SECRET, "X-Hub-Signature-256"))
    headers["Content-Type"] = content_type
    headers["X-GitHub-Event"] = draw(
        mostly(st.just(event), st.sampled_from(GITHUB_EVENTS), header_texts(70))
    )
    headers["X-GitHub-Delivery"] = draw(
        mostly(FRESH_IDS, st.just("a-redelivery"), header_texts(140))
    )
    return body, headers


@st.composite
def jira_deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A signed POST /webhooks/jira: a real Server or Cloud payload mutated, or any bytes."""
    _, payload = draw(mutated_payloads("jira/webhooks", "jira/webhooks-cloud"))
    raw = draw(mostly(json_bodies(st.just(payload)), st.binary(max_size=200)))
    body, headers = draw(signed_requests(raw, JIRA_WEBHOOK_SECRET, "X-Hub-Signature"))
    headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
    identifier = draw(mostly(FRESH_IDS, st.none(), header_texts(140)))
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return body, headers


@pytest.fixture
async def webhooks(start_app: StartApp, tmp_path: Path) -> AsyncIterator[AppClient]:
    """The app with both webhook secrets; the deliveries it accepted are worked at the end and
    their statuses tallied (a handler's failure is the dispatcher's record, not an answer)."""
    client = await start_app(
        make_settings(tmp_path, jira_webhook_secret=Secret(JIRA_WEBHOOK_SECRET))
    )
    yield client
    await client.app[DISPATCHER].drain()
    target: str | None = "/api/deliveries?limit=1000"
    while target:
        page = await (await client.get(target, headers=auth_headers())).json()
        TALLY.dispatched.update(delivery["status"] for delivery in page["deliveries"])
        target = page["next"] and f"/api/deliveries?limit=1000&before={page['next']}"


@FUZZ
@pytest.mark.parametrize(
    ("path", "deliveries"),
    [("/webhooks/github", github_deliveries()), ("/webhooks/jira", jira_deliveries())],
    ids=["github", "jira"],
)
@given(data=st.data())
async def test_a_signed_webhook_of_any_shape_never_gets_a_5xx(
    webhooks: AppClient,
    watch: TracebackWatch,
    path: str,
    deliveries: st.SearchStrategy[tuple[bytes, dict[str, str]]],
    data: st.DataObject,
) -> None:
    body, headers = data.draw(deliveries)
    await answer_to(webhooks, "POST", path, data=body, headers=headers)
    no_tracebacks(watch, headers)


def placeholders_filled(template: str, values: list[str]) -> str:
    found = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: next(found), template)


API_BODIES = st.one_of(
    json_bodies(json_values(FIELD_NAMES)),
    json_bodies(st.dictionaries(FIELD_NAMES, json_values(FIELD_NAMES), max_size=5)),
    st.binary(max_size=300),
)


@FUZZ
@given(data=st.data(), body=API_BODIES, content_type=st.sampled_from(CONTENT_TYPES))
async def test_any_body_on_any_route_that_takes_one_never_gets_a_5xx(
    every_feature: AppClient,
    watch: TracebackWatch,
    data: st.DataObject,
    body: bytes,
    content_type: str,
) -> None:
    """Each POST and PUT route of the app (enumerated, so a later one is covered too), its ids
    those of the registered repository and a plausible ticket."""
    method, template = data.draw(st.sampled_from(api_routes(every_feature.app, {"POST", "PUT"})))
    ids = ["AB-1" if name == "key" else "1" for name in re.findall(r"\{([^}]+)\}", template)]
    wire, headers = data.draw(wire_encodings(body))
    headers = {**auth_headers(), **headers, "Content-Type": content_type}
    target = placeholders_filled(template, ids)
    await answer_to(every_feature, method, target, data=wire, headers=headers)
    no_tracebacks(watch, (method, target))


@st.composite
def queries(draw: st.DrawFn) -> str:
    """A query string of known and unknown names and any values, percent-encoded (raw bytes in
    the request line are refused by aiohttp's parser before any of our code runs)."""
    names = st.one_of(st.sampled_from(query_names()), texts(10))
    pairs = draw(st.lists(st.tuples(names, path_segments()), max_size=4))
    return "&".join(f"{quote_from_bytes(as_bytes(name), safe='')}={value}" for name, value in pairs)


@FUZZ
@given(data=st.data(), query=queries())
async def test_any_id_and_query_on_any_route_never_gets_a_5xx(
    every_feature: AppClient, watch: TracebackWatch, data: st.DataObject, query: str
) -> None:
    """Every route of the app but the static files and /ws, each placeholder any text."""
    routes = [
        (method, path)
        for method, path in api_routes(
            every_feature.app, {"GET", "POST", "PUT", "DELETE"}, prefix="/"
        )
        if path not in ("/static", "/ws")
    ]
    method, template = data.draw(st.sampled_from(routes))
    slots = len(re.findall(r"\{[^}]+\}", template))
    ids = data.draw(st.lists(path_segments(), min_size=slots, max_size=slots))
    target = placeholders_filled(template, ids) + (f"?{query}" if query else "")
    assume(len(target) < MAX_LINE)
    await answer_to(every_feature, method, target, headers=auth_headers())
    no_tracebacks(watch, (method, target))


class Socket:
    """One WebSocket to /ws with the token, opened again after the server closed it."""

    def __init__(self, client: AppClient) -> None:
        self.client = client
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self, query: str = "") -> aiohttp.ClientWebSocketResponse:
        if self.ws is not None and not self.ws.closed and not query:
            return self.ws
        await self.close()
        target = f"/ws?token={API_TOKEN}" + (f"&{query}" if query else "")
        url = URL(str(self.client.make_url("/")).rstrip("/") + target, encoded=True)
        TALLY.requests += 1
        try:
            self.ws = await self.client.session.ws_connect(url, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as refused:
            TALLY.answers[f"{refused.status // 100}xx"] += 1
            if refused.status >= 500:
                TALLY.server_errors += 1
                raise AssertionError(f"GET {target} answered {refused.status}") from None
            raise
        TALLY.answers["1xx"] += 1
        hello = await self.ws.receive_json(timeout=10)
        assert hello["control"] == "hello", hello
        return self.ws

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def still_answers(self, ws: aiohttp.ClientWebSocketResponse, sent: object) -> None:
        """After `sent`, a ping is answered (the socket stayed) or the socket was closed with a
        code for what the client sent; anything else fails the test."""
        if not ws.closed:
            with contextlib.suppress(ConnectionError):  # the close may be on its way already
                await ws.send_str('{"action": "ping"}')
                TALLY.frames += 1
        while True:
            try:
                message = await ws.receive(timeout=10)
            except TimeoutError:
                TALLY.dropped += 1
                raise AssertionError(f"no answer to {sent!r:.300}") from None
            if message.type == WSMsgType.TEXT and json.loads(message.data).get("control") == "pong":
                return
            if message.type == WSMsgType.CLOSE:
                TALLY.closes[message.data] += 1
                if message.data not in CLIENT_CLOSES:
                    TALLY.bad_closes += 1
                    raise AssertionError(
                        f"{sent!r:.300} closed with {message.data} {message.extra}"
                    )
                return
            if message.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
                TALLY.dropped += 1
                raise AssertionError(f"{sent!r:.300} dropped the socket: {message}")


@pytest.fixture
async def socket(client: AppClient) -> AsyncIterator[Socket]:
    opened = Socket(client)
    yield opened
    await opened.close()


def subscribe_frames() -> st.SearchStrategy[dict[str, Any]]:
    """`subscribe` with each of its fields missing, of the right type with any value, or any
    JSON at all."""
    since = st.one_of(
        st.integers(min_value=-(2**64), max_value=2**64),
        st.integers(0, 10**30).map(str),
        json_values(),
    )
    streams = st.one_of(st.just("*"), texts(), st.lists(texts(), max_size=4), json_values())
    return st.fixed_dictionaries(
        {"action": st.just("subscribe")},
        optional={"streams": streams, "since": since, "epoch": st.one_of(texts(), json_values())},
    )


FRAMES = st.one_of(
    texts(200).map(as_bytes),
    json_bodies(json_values(st.sampled_from(Frame.__struct_fields__))),
    json_bodies(subscribe_frames()),
    st.integers(64 * 1024 - 100, 64 * 1024 + 100).map(lambda size: b'"' + b"x" * size + b'"'),
)


@FUZZ
@given(frame=FRAMES)
async def test_any_text_frame_closes_the_websocket_with_a_client_code_or_is_answered(
    socket: Socket, watch: TracebackWatch, frame: bytes
) -> None:
    ws = await socket.open()
    await ws.send_frame(frame, WSMsgType.TEXT)  # as it is: not UTF-8 perhaps
    TALLY.frames += 1
    await socket.still_answers(ws, frame)
    no_tracebacks(watch, frame[:300])


@FUZZ
@given(frame=st.binary(max_size=2000))
async def test_any_binary_frame_leaves_the_websocket_answering(
    socket: Socket, watch: TracebackWatch, frame: bytes
) -> None:
    ws = await socket.open()
    await ws.send_bytes(frame)
    TALLY.frames += 1
    await socket.still_answers(ws, frame)
    no_tracebacks(watch, frame[:300])


@FUZZ
@given(query=queries())
async def test_any_subscribe_in_the_query_of_the_websocket_is_answered(
    socket: Socket, watch: TracebackWatch, query: str
) -> None:
    assume(len(query) < MAX_LINE - 100)
    try:
        ws = await socket.open(query)
    except aiohttp.WSServerHandshakeError:
        return  # refused with a 4xx before the upgrade: an answer
    await socket.still_answers(ws, query)
    no_tracebacks(watch, query)
