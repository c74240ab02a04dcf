"""Reading a request's parameters the way Jira does, for the fake Jira's routes.

Part of the Jira protocol fake (tests/fakes/jira/): a search's parameters come from the query
string, or from the JSON body of a POST; `fields` and `expand` are comma-separated lists.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def request_params(request: web.Request) -> dict[str, Any]:
    """The query string's values, each a list, updated by a POST's JSON body."""
    params: dict[str, Any] = {key: request.query.getall(key) for key in request.query}
    if request.method == "POST" and request.can_read_body:
        body = await request.json()
        params.update(
            {key: value if isinstance(value, list) else [value] for key, value in body.items()}
        )
    return params


def fields_wanted(params: dict[str, Any]) -> set[str] | None:
    """The fields asked for, or None for all of them."""
    raw = params.get("fields")
    if not raw:
        return None
    wanted: set[str] = set()
    for entry in raw:
        wanted.update(part.strip() for part in str(entry).split(",") if part.strip())
    return wanted


def expansions(params: dict[str, Any]) -> set[str]:
    """The parts to expand (`changelog`, ...)."""
    found: set[str] = set()
    for entry in params.get("expand") or []:
        found.update(part.strip() for part in str(entry).split(","))
    return found
