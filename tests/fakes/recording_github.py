"""`RecordingGitHub`: the unit-level fake of the gidgethub client, for a handler's own tests.

Like gidgethub's own `MockGitHubAPI`, it subclasses `gidgethub.abc.GitHubAPI` and overrides only
`_request` and `sleep`: URL templates, headers, pagination, status-to-exception mapping and
rate-limit parsing are gidgethub's real code. It records every call as `(method, path, body)`
and answers from canned replies keyed by `(method, path)`; a call without one is answered 404,
as GitHub answers a missing resource. End-to-end tests use the protocol fake
(tests/fakes/github.py) instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gidgethub.abc import GitHubAPI


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str  # with its query string, without the host
    body: Any


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class RecordingGitHub(GitHubAPI):
    def __init__(self, replies: Mapping[tuple[str, str], Reply | Any] | None = None) -> None:
        super().__init__("biagent-tests")
        self.replies: dict[tuple[str, str], Reply | Any] = dict(replies or {})
        self.calls: list[Call] = []

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        parts = urlsplit(url)
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        self.calls.append(Call(method, path, json.loads(body) if body else None))
        found = self.replies.get((method, path), self.replies.get((method, parts.path)))
        if found is None:
            reply = Reply({"message": "Not Found"}, status=404)
        else:
            reply = found if isinstance(found, Reply) else Reply(found)
        content = b"" if reply.body is None else json.dumps(reply.body).encode()
        return reply.status, {"content-type": "application/json", **reply.headers}, content

    async def sleep(self, seconds: float) -> None:
        return None
