"""What the GitHub fake's parts share (github.py, github_reviews.py, github_manifest.py,
github_graphql.py): GitHub's example answers, its time format, its errors, its paging
(`per_page`/`page` and a `Link` header to the next page), and a bare repository's branch."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

API_EXAMPLES = Path(__file__).parent.parent / "fixtures" / "github-api"


def api_example(name: str) -> Any:
    """GitHub's example response `name` (tests/fixtures/github-api), a fresh copy each time."""
    return json.loads((API_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def github_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def repo_of(request: web.Request) -> str:
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


def public(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if not key.startswith("_")}


def page_of(
    request: web.Request, items: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The page `page`/`per_page` asks for, and the Link header to the next one."""
    per_page = min(int(request.query.get("per_page", 30)), 100)
    number = int(request.query.get("page", 1))
    chunk = items[(number - 1) * per_page : number * per_page]
    headers = {}
    if number * per_page < len(items):
        next_url = request.url.update_query({"page": number + 1, "per_page": per_page})
        headers["Link"] = f'<{next_url}>; rel="next"'
    return [public(item) for item in chunk], headers


def paginate(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    chunk, headers = page_of(request, items)
    return web.json_response(chunk, headers=headers)


def paginate_key(request: web.Request, key: str, items: list[dict[str, Any]]) -> web.Response:
    """A page of a list GitHub wraps in an object: `{"total_count": n, key: [...]}`."""
    chunk, headers = page_of(request, items)
    return web.json_response(
        {"total_count": len(items), key: chunk},
        headers=headers,
    )


async def branch_sha(bare: Path, branch: str) -> str:
    """What `branch` holds in a bare repository (empty when it has no such branch)."""
    git = await asyncio.create_subprocess_exec(
        "git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}",
        cwd=bare, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    head, _ = await git.communicate()
    return head.decode().strip()


def api_error(status: int, message: str) -> web.HTTPException:
    exception = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        422: web.HTTPUnprocessableEntity,
    }.get(status, web.HTTPBadRequest)
    return exception(
        text=f'{{"message": "{message}", "documentation_url": "https://docs.github.com/rest"}}',
        content_type="application/json",
    )
