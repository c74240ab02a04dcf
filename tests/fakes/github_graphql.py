"""The GitHub fake's review threads (GraphQL) and requested reviewers (REST), beside github.py.

`POST /graphql` answers the two operations biagent sends, as GitHub's GraphQL API does: the
pull request's `reviewThreads` (paged by `first`/`after` with `pageInfo`, each thread's `id`,
`isResolved` and its comments' `fullDatabaseId`, a BigInt as a string, and `databaseId`, an Int
that is null for an id past 2^31 - 1, as GitHub answers since review comment ids passed it) and
`resolveReviewThread(input: {threadId})`. It reads the query's own variable names
(`repository(owner: $o, name: $n)`, `pullRequest(number: $x)`, `after: $cursor`, `threadId:
$t`), so a query that names a variable it does not send gets nothing, as on GitHub. Anything
else is a GraphQL error (200 with `errors`), as is an unknown thread id. A thread is a root
review comment and its replies; its node id is opaque (`PRRT_...`, made when first listed or
asked for by `node_id_of`), so biagent must look it up.

`POST /repos/{o}/{r}/pulls/{n}/requested_reviewers` adds reviewers (422 for the pull request's
author and for someone who is not a collaborator, as GitHub answers), and `GET` lists them
(`{"users": [...], "teams": []}`). A submitted review removes its author from the list, as on
GitHub (`review_submitted`, called when a test seeds a review).
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

_REPOSITORY = re.compile(r"repository\(\s*owner:\s*\$(\w+)\s*,\s*name:\s*\$(\w+)\s*\)")
_PULL_REQUEST = re.compile(r"pullRequest\(\s*number:\s*\$(\w+)\s*\)")
_THREADS = re.compile(r"reviewThreads\(\s*first:\s*(\d+)(?:\s*,\s*after:\s*\$(\w+))?\s*\)")
_COMMENTS = re.compile(r"comments\(\s*first:\s*(\d+)\s*\)")
_RESOLVE = re.compile(r"resolveReviewThread\(\s*input:\s*\{\s*threadId:\s*\$(\w+)\s*\}\s*\)")


def _graphql_error(message: str, kind: str = "INVALID") -> web.Response:
    return web.json_response({"data": None, "errors": [{"type": kind, "message": message}]})


class ThreadsAndReviewers:
    """Review threads over GraphQL and requested reviewers, on the fake's own review comments
    and pull requests (it reads `github.review_comments` and `github.pulls`)."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github
        self.node_ids: dict[int, str] = {}  # root comment id -> the thread's node id
        self.resolved: set[int] = set()  # root comment ids of resolved threads
        self.resolved_by_mutation: list[int] = []  # each resolveReviewThread, in order
        self.requested: dict[tuple[str, int], list[str]] = {}  # pull request -> logins
        self.review_requests: list[tuple[str, int, list[str]]] = []  # each POST, in order
        self.page_size_limit = 100  # a test lowers it to see biagent page through threads

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.post("/graphql")(self.graphql)
        pull = "/repos/{owner}/{repo}/pulls/{number:\\d+}/requested_reviewers"
        routes.get(pull)(self.list_requested_reviewers)
        routes.post(pull)(self.request_reviewers)

    # -- seeding and inspecting (tests) --------------------------------------------------

    def node_id_of(self, root_id: int) -> str:
        if root_id not in self.node_ids:
            self.node_ids[root_id] = "PRRT_kwDO" + secrets.token_urlsafe(9)
        return self.node_ids[root_id]

    def review_submitted(self, repository: str, number: int, login: str) -> None:
        requested = self.requested.get((repository, number), [])
        self.requested[(repository, number)] = [r for r in requested if r.lower() != login.lower()]

    def requested_of(self, repository: str, number: int) -> list[str]:
        return list(self.requested.get((repository, number), []))

    # -- GraphQL -----------------------------------------------------------------------

    async def graphql(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        body = await request.json()
        query, variables = str(body.get("query", "")), body.get("variables") or {}
        if query.lstrip().startswith("mutation"):
            match = _RESOLVE.search(query)
            if match is None:
                return _graphql_error("this fake knows only the resolveReviewThread mutation")
            return self._resolve(variables.get(match.group(1)))
        repository, pull, threads = (
            _REPOSITORY.search(query),
            _PULL_REQUEST.search(query),
            _THREADS.search(query),
        )
        if repository is None or pull is None or threads is None:
            return _graphql_error("this fake knows only a pull request's reviewThreads")
        owner, name = variables.get(repository.group(1)), variables.get(repository.group(2))
        number = variables.get(pull.group(1))
        key = (f"{owner}/{name}", number)
        if not isinstance(number, int) or key not in self.github.pulls:
            return _graphql_error(
                f"Could not resolve to a PullRequest with the number of {number}.", "NOT_FOUND"
            )
        after = variables.get(threads.group(2)) if threads.group(2) else None
        comments = _COMMENTS.search(query)
        page = self._threads_page(
            key[0],
            number,
            first=min(int(threads.group(1)), self.page_size_limit),
            after=after,
            comments_first=int(comments.group(1)) if comments else 0,
        )
        return web.json_response({"data": {"repository": {"pullRequest": {"reviewThreads": page}}}})

    def _threads_page(
        self, repository: str, number: int, *, first: int, after: Any, comments_first: int
    ) -> dict[str, Any]:
        mine = sorted(
            (
                c
                for c in self.github.review_comments.values()
                if c["_repo"] == repository and c["_number"] == number
            ),
            key=lambda c: c["id"],
        )
        roots = [c["id"] for c in mine if not c.get("in_reply_to_id")]
        start = int(base64.b64decode(after).decode()) if isinstance(after, str) else 0
        chunk = roots[start : start + first]
        nodes = []
        for root in chunk:
            thread = [c["id"] for c in mine if c["id"] == root or c.get("in_reply_to_id") == root]
            nodes.append(
                {
                    "id": self.node_id_of(root),
                    "isResolved": root in self.resolved,
                    "comments": {"nodes": [_comment_node(i) for i in thread[:comments_first]]},
                }
            )
        end = start + len(chunk)
        return {
            "pageInfo": {
                "hasNextPage": end < len(roots),
                "endCursor": base64.b64encode(str(end).encode()).decode() if chunk else None,
            },
            "nodes": nodes,
        }

    def _resolve(self, thread_id: Any) -> web.Response:
        root = next((r for r, node in self.node_ids.items() if node == thread_id), None)
        if root is None:
            return _graphql_error(
                f"Could not resolve to a node with the global id of '{thread_id}'", "NOT_FOUND"
            )
        self.resolved.add(root)
        self.resolved_by_mutation.append(root)
        return web.json_response(
            {"data": {"resolveReviewThread": {"thread": {"id": thread_id, "isResolved": True}}}}
        )

    # -- requested reviewers ---------------------------------------------------------------

    def _pull_of(self, request: web.Request) -> tuple[tuple[str, int], dict[str, Any]]:
        self.github.check_token(request)
        info = request.match_info
        key = (f"{info['owner']}/{info['repo']}", int(info["number"]))
        pull = self.github.pulls.get(key)
        if pull is None:
            raise web.HTTPNotFound(text='{"message": "Not Found"}', content_type="application/json")
        return key, pull

    def _users(self, logins: list[str]) -> list[dict[str, Any]]:
        return [{"login": login, "id": 1 + sum(login.encode()), "type": "User"} for login in logins]

    async def list_requested_reviewers(self, request: web.Request) -> web.Response:
        key, _ = self._pull_of(request)
        return web.json_response({"users": self._users(self.requested_of(*key)), "teams": []})

    async def request_reviewers(self, request: web.Request) -> web.Response:
        key, pull = self._pull_of(request)
        logins = [str(login) for login in (await request.json()).get("reviewers") or []]
        author = str((pull.get("user") or {}).get("login", "")).lower()
        if any(login.lower() == author for login in logins):
            return _unprocessable("Review cannot be requested from pull request author.")
        strangers = [
            login for login in logins if (key[0], login.lower()) not in self.github.permissions
        ]
        if strangers:
            return _unprocessable(
                "Reviews may only be requested from collaborators. One or more of the users or"
                f" teams you specified is not a collaborator of the {key[0]} repository."
            )
        self.review_requests.append((key[0], key[1], logins))
        requested = self.requested.setdefault(key, [])
        known = {login.lower() for login in requested}
        requested += [login for login in logins if login.lower() not in known]
        public = {name: value for name, value in pull.items() if not name.startswith("_")}
        answer = {**public, "requested_reviewers": self._users(requested)}
        return web.json_response(answer, status=201)


def _comment_node(comment_id: int) -> dict[str, Any]:
    small = comment_id if comment_id < 2**31 else None  # GraphQL's Int is 32 bits
    return {"databaseId": small, "fullDatabaseId": str(comment_id)}


def _unprocessable(message: str) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": "https://docs.github.com/rest"}, status=422
    )
