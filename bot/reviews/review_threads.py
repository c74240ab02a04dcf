"""A pull request's review threads over GitHub's GraphQL API: listed, and resolved.

REST has no word for a thread's resolution, so this is the one GraphQL part of the review
concern, through gidgethub's `gh.graphql()` (bot/github/manners.py fetches the installation
token and picks the endpoint beside the REST base). A thread is found by its comments' REST ids
(`fullDatabaseId`, a BigInt GitHub sends as a string: review comment ids passed 2^31 in 2025,
and the older Int `databaseId` is null for those): biagent knows a thread by its root comment's
id, GitHub's mutation wants the thread's node id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI

from storage.pull_requests import PullRequest

THREADS_PER_PAGE = 100  # GitHub's most for `first`
COMMENTS_PER_THREAD = 100

THREADS_QUERY = f"""
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {{
  repository(owner: $owner, name: $name) {{
    pullRequest(number: $number) {{
      reviewThreads(first: {THREADS_PER_PAGE}, after: $cursor) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{
          id
          isResolved
          comments(first: {COMMENTS_PER_THREAD}) {{ nodes {{ fullDatabaseId }} }}
        }}
      }}
    }}
  }}
}}
"""

RESOLVE_MUTATION = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) {
    thread { id isResolved }
  }
}
"""


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """One review thread as GraphQL shows it."""

    node_id: str
    resolved: bool
    comment_ids: frozenset[int]


def _thread(node: dict[str, Any]) -> ThreadNode:
    comments = (node.get("comments") or {}).get("nodes") or []
    ids = frozenset(_comment_id(c) for c in comments if c and c.get("fullDatabaseId"))
    return ThreadNode(str(node["id"]), bool(node.get("isResolved")), ids)


def _comment_id(comment: dict[str, Any]) -> int:
    """A comment's REST id from its `fullDatabaseId` (a BigInt: a string, or a number)."""
    return int(str(comment["fullDatabaseId"]))


async def list_threads(gh: GitHubAPI, pr: PullRequest) -> list[ThreadNode]:
    """Every review thread of the pull request, page by page."""
    owner, name = pr.repository.split("/", 1)
    threads: list[ThreadNode] = []
    cursor: str | None = None
    while True:
        data = await gh.graphql(
            THREADS_QUERY, owner=owner, name=name, number=pr.number, cursor=cursor
        )
        pull_request = ((data or {}).get("repository") or {}).get("pullRequest") or {}
        page = pull_request.get("reviewThreads") or {}
        threads += [_thread(node) for node in page.get("nodes") or [] if node]
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return threads
        cursor = str(info["endCursor"])


def thread_holding(threads: Iterable[ThreadNode], comment_ids: Iterable[int]) -> ThreadNode | None:
    """The thread holding any of `comment_ids` (a thread's root, else a reply, in case GitHub
    no longer lists a deleted root)."""
    wanted = set(comment_ids)
    return next((thread for thread in threads if thread.comment_ids & wanted), None)


async def resolve_thread(gh: GitHubAPI, node_id: str) -> bool:
    """Resolve one thread; whether GitHub says it is resolved now."""
    data = await gh.graphql(RESOLVE_MUTATION, threadId=node_id)
    thread = ((data or {}).get("resolveReviewThread") or {}).get("thread") or {}
    return bool(thread.get("isResolved"))
