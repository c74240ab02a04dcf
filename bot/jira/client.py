"""The JIRA REST client: the synchronous `jira` library, through its public API, in threads.

Every call goes to a small thread pool, so the event loop never blocks on Jira. The library's
own retry loop is switched off (it sleeps in the thread, up to minutes on a connection error);
instead a 429 or 503 is retried by the one retry policy (bot/retry.py) after its
`Retry-After`, waited on the injected clock, and a connection error fails at once with a clear
message (the next scheduled sync is the retry). Errors come out as bot/jira/errors.py's
hierarchy, which the API and the CLI map to their answers.

Server/Data Center and Cloud differ in search: Server pages `GET /search` by startAt, Cloud
removed that endpoint in 2025 (410 Gone) and pages `GET /search/jql` by nextPageToken. The
deployment type comes from `serverInfo` when the client connects.

The library translates field names through a cache it fills from `fields()` (`GET /field`)
before its first search. biagent asks only for system fields, whose JQL names are their ids,
so `_KnownFieldsJira.fields()` answers with them and no search depends on that extra call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from jira import JIRA, JIRAError

from bot.clock import Clock
from bot.config import Secret
from bot.jira.attachments import (
    AttachmentDownloader,
    AttachmentStream,
    authorized_session,
    download_url,
)
from bot.jira.errors import (
    JiraAuthError,
    JiraBadRequest,
    JiraError,
    JiraNotFound,
    JiraRateLimited,
    JiraUnavailable,
    is_throttled,
    retry_after,
    translate,
)
from bot.jira.issues import SYNC_FIELDS
from bot.retry import RetryPolicy

__all__ = [
    "AttachmentStream",
    "JiraAuthError",
    "JiraBadRequest",
    "JiraClient",
    "JiraError",
    "JiraNotFound",
    "JiraRateLimited",
    "JiraUnavailable",
    "SearchPage",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRIES = 5
# Jira says how long to wait; a long Retry-After is honoured as it is, never cut short.
JIRA_RETRY = RetryPolicy(max_attempts=MAX_RETRIES + 1, cap_s=math.inf)
REQUEST_TIMEOUT_S = 60.0
# Largest id-only pages: Server's default search limit; Cloud's for `fields=id` searches.
SERVER_ID_PAGE = 1000
CLOUD_ID_PAGE = 5000
# Statuses meaning "this site has no such endpoint": not worth asking again.
ENDPOINT_MISSING = (404, 405, 410, 501)
CLOUD = "Cloud"


class _KnownFieldsJira(JIRA):
    """The library client, told the fields biagent uses instead of asking `GET /field`."""

    def fields(self) -> list[dict[str, Any]]:
        # System fields' JQL names are their ids: the library's translation is the identity.
        return [{"id": name, "name": name, "clauseNames": [name]} for name in _KNOWN_FIELDS]


_KNOWN_FIELDS = (*SYNC_FIELDS, "id", "key")


@dataclass(frozen=True, slots=True)
class SearchPage:
    issues: list[dict[str, Any]]
    total: int | None  # Server only; Cloud's search/jql does not count
    next_token: str | None  # Cloud only
    is_last: bool


class JiraClient:
    """One connection to one Jira site, shared by the sync, the webhooks, the API and the CLI.

    `requests_made` counts the HTTP requests Jira answered: one per attempt of a call (every
    call the sync makes is a single request), and each attachment download.
    """

    def __init__(
        self,
        *,
        url: str,
        email: str | None,
        api_token: Secret,
        clock: Clock,
        workers: int = 4,
        timeout_s: float = REQUEST_TIMEOUT_S,
        retry_policy: RetryPolicy = JIRA_RETRY,
    ) -> None:
        self.url = url.rstrip("/")
        self.email = email
        self.api_token = api_token
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry_policy = retry_policy
        self.requests_made = 0
        self.deployment: str | None = None
        self.approximate_count_available = True
        self.site_base_url: str | None = None  # serverInfo's baseUrl: how Jira names itself
        self._jira: JIRA | None = None
        self._myself: dict[str, Any] | None = None
        self._connect_lock = asyncio.Lock()
        self._count_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jira")
        self.attachments = AttachmentDownloader(
            session=authorized_session(
                email=email, token=api_token.reveal(), on_response=self._count_response
            ),
            workers=workers,
            timeout_s=timeout_s,
        )

    @property
    def is_cloud(self) -> bool:
        return self.deployment == CLOUD

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.attachments.close()
        if self._jira is not None:
            with contextlib.suppress(Exception):
                self._jira.close()
            self._jira = None

    # -- plumbing ------------------------------------------------------------------------

    def _counted(self, requests_per_call: int) -> None:
        with self._count_lock:
            self.requests_made += requests_per_call

    def _count_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._counted(1)

    def _build(self) -> JIRA:
        # Email + API token is Cloud's basic auth; a token alone is a Server/DC personal token.
        token = self.api_token.reveal()
        if self.email:
            return _KnownFieldsJira(
                server=self.url,
                basic_auth=(self.email, token),
                get_server_info=False,
                max_retries=0,
                timeout=self.timeout_s,
                logging=False,
            )
        return _KnownFieldsJira(
            server=self.url,
            token_auth=token,
            get_server_info=False,
            max_retries=0,
            timeout=self.timeout_s,
            logging=False,
        )

    async def connect(self) -> JIRA:
        """The library client, built on first use; asks serverInfo for the deployment type."""
        if self._jira is not None:
            return self._jira
        async with self._connect_lock:
            if self._jira is None:
                jira = await self._in_thread("connect", self._build)
                try:
                    info = await self._retrying("serverInfo", jira.server_info)
                except BaseException:
                    jira.close()
                    raise
                self.deployment = str(info.get("deploymentType") or "Server")
                base_url = info.get("baseUrl")
                self.site_base_url = str(base_url).rstrip("/") if base_url else None
                # The library's public attribute; its Cloud-only calls (search/jql, counts)
                # check it. Its version tuple is left alone: no call biagent makes reads it.
                jira.deploymentType = self.deployment
                self._jira = jira
        return self._jira

    async def _in_thread(self, what: str, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function)
        except (JIRAError, requests.RequestException) as error:
            raise translate(error, what) from error

    def _attempt(self, function: Callable[[], T], requests_per_call: int) -> Callable[[], T]:
        """`function`, counting its requests when Jira answered (not on a connection error)."""

        def attempt() -> T:
            try:
                result = function()
            except JIRAError as error:
                if error.status_code is not None:
                    self._counted(requests_per_call)
                raise
            self._counted(requests_per_call)
            return result

        return attempt

    async def _retrying(
        self, what: str, function: Callable[[], T], *, requests_per_call: int = 1
    ) -> T:
        """Run a call in a worker thread; on 429/503 wait Retry-After (on our clock), again."""
        loop = asyncio.get_running_loop()
        attempt = self._attempt(function, requests_per_call)

        # A coroutine function: tenacity calls a plain one without awaiting what it returns.
        async def in_thread() -> T:
            return await loop.run_in_executor(self._executor, attempt)

        try:
            return await self.retry_policy.call(
                in_thread,
                clock=self.clock,
                retry_on=is_throttled,
                asked_wait=retry_after,
                what=what,
            )
        except (JIRAError, requests.RequestException) as error:
            raise translate(error, what) from error

    async def call(
        self, what: str, function: Callable[[JIRA], T], *, requests_per_call: int = 1
    ) -> T:
        """Run `function(jira_library_client)` in a worker thread, with the retry policy.

        `requests_per_call`: how many HTTP requests `function` makes, for `requests_made`.
        """
        jira = await self.connect()
        return await self._retrying(
            what, lambda: function(jira), requests_per_call=requests_per_call
        )

    # -- reads -----------------------------------------------------------------------------

    async def project_keys(self) -> list[str]:
        projects = await self.call("projects", lambda jira: jira.projects())
        return sorted(str(project.key) for project in projects)

    async def search_page(
        self,
        jql: str,
        *,
        fields: list[str],
        expand: str | None = None,
        start_at: int = 0,
        token: str | None = None,
        max_results: int = 100,
        validate_query: bool = True,
    ) -> SearchPage:
        """One page of a JQL search: startAt paging on Server, token paging on Cloud.

        `validate_query=False` lets Server answer an `id in (...)` naming deleted issues with
        a warning instead of a 400; Cloud's search/jql has no such switch and always refuses.
        """
        await self.connect()
        if self.is_cloud:
            return await self._cloud_search_page(
                jql, fields=fields, expand=expand, token=token, max_results=max_results
            )
        found = await self.call(
            "search",
            lambda jira: jira.search_issues(
                jql,
                startAt=start_at,
                maxResults=max_results,
                validate_query=validate_query,
                fields=list(fields),
                expand=expand,
                json_result=True,
            ),
        )
        issues = list(found.get("issues") or [])
        total = int(found.get("total") or 0)
        return SearchPage(issues, total, None, start_at + len(issues) >= total or not issues)

    async def _cloud_search_page(
        self,
        jql: str,
        *,
        fields: list[str],
        expand: str | None,
        token: str | None,
        max_results: int,
    ) -> SearchPage:
        found = await self.call(
            "search",
            lambda jira: jira.enhanced_search_issues(
                jql,
                nextPageToken=token,
                maxResults=max_results,
                fields=list(fields),
                expand=expand,
                json_result=True,
            ),
        )
        if not isinstance(found, dict):
            raise JiraError(f"search: Jira's search/jql answered {type(found).__name__}")
        next_token = found.get("nextPageToken")
        return SearchPage(
            list(found.get("issues") or []),
            None,
            next_token,
            bool(found.get("isLast", next_token is None)) or not next_token,
        )

    async def count(self, jql: str) -> int | None:
        """How many issues match (Cloud: Jira's approximate count).

        None when Cloud's approximate-count cannot answer (a site or proxy without it, or any
        other HTTP error): the caller lists ids instead. A missing endpoint is not asked again.
        """
        await self.connect()
        if not self.is_cloud:
            found = await self.call(
                "count",
                lambda jira: jira.search_issues(jql, maxResults=1, fields=["id"], json_result=True),
            )
            return int(found.get("total") or 0)
        if not self.approximate_count_available:
            return None
        try:
            counted = await self.call("count", lambda jira: jira.approximate_issue_count(jql))
        except JiraError as error:
            if error.status is None:
                raise
            if error.status in ENDPOINT_MISSING:
                self.approximate_count_available = False
            log.warning("Jira's approximate count failed (%s); listing ids instead", error)
            return None
        if not isinstance(counted, int):
            raise JiraError(f"count: Jira's approximate count answered {counted!r}")
        return counted

    async def issue_ids(self, jql: str) -> list[str]:
        """Every id `jql` finds, in its order, in the largest id-only pages Jira serves."""
        await self.connect()
        ids: list[str] = []
        start_at, token = 0, None
        while True:
            page = await self.search_page(
                jql,
                fields=["id"],
                start_at=start_at,
                token=token,
                max_results=CLOUD_ID_PAGE if self.is_cloud else SERVER_ID_PAGE,
            )
            ids.extend(str(issue["id"]) for issue in page.issues)
            start_at += len(page.issues)
            token = page.next_token
            if page.is_last or not page.issues:
                return ids

    async def issue_exists(self, issue_id: str) -> bool:
        """Whether Jira still has this issue: its GET answers 404 once it is deleted."""
        try:
            await self.issue(issue_id, fields=["id"])
        except JiraNotFound:
            return False
        return True

    async def issue(
        self, key_or_id: str, *, fields: list[str] | None = None, expand: str | None = None
    ) -> dict[str, Any]:
        found = await self.call(
            f"issue {key_or_id}",
            lambda jira: jira.issue(
                key_or_id, fields=",".join(fields) if fields else None, expand=expand
            ),
        )
        return dict(found.raw)

    async def full_changelog(self, key_or_id: str) -> list[dict[str, Any]]:
        """Every history of an issue, for when a search returned only the first ones."""
        await self.connect()
        if not self.is_cloud:
            # Server/DC has no changelog endpoint; the issue with expand=changelog is complete.
            issue = await self.issue(key_or_id, fields=["updated"], expand="changelog")
            return list((issue.get("changelog") or {}).get("histories") or [])
        histories: list[dict[str, Any]] = []
        while True:
            page = await self._changelog_page(key_or_id, len(histories))
            values = list(page.get("values") or [])
            histories.extend(values)
            total = int(page.get("total") or 0)
            if not values or page.get("isLast", len(histories) >= total):
                return histories

    async def _changelog_page(self, key_or_id: str, start_at: int) -> dict[str, Any]:
        # The library has no call for Cloud's changelog endpoint; `find` is its documented way
        # to GET any REST resource (the page's query rides in the path it formats).
        resource = f"issue/{{0}}/changelog?startAt={start_at}&maxResults=100"
        page = await self.call(
            f"changelog {key_or_id}", lambda jira: jira.find(resource, key_or_id)
        )
        return dict(page.raw or {})

    async def myself(self) -> dict[str, Any]:
        """The account biagent authenticates as (asked once): how it knows its own comments."""
        if self._myself is None:
            self._myself = dict(await self.call("myself", lambda jira: jira.myself()))
        return self._myself

    async def transitions(self, key: str) -> list[dict[str, Any]]:
        return list(await self.call(f"transitions {key}", lambda jira: jira.transitions(key)))

    # -- writes ----------------------------------------------------------------------------

    async def update_fields(self, key: str, fields: dict[str, Any]) -> None:
        def update(jira: JIRA) -> None:
            jira.issue(key, fields="summary").update(fields=fields)

        # The issue's GET, the PUT, and the library's reload of the issue after it.
        await self.call(f"update {key}", update, requests_per_call=3)

    async def transition(self, key: str, transition_id: str) -> None:
        await self.call(f"transition {key}", lambda jira: jira.transition_issue(key, transition_id))

    async def add_comment(self, key: str, body: str) -> dict[str, Any]:
        comment = await self.call(f"comment {key}", lambda jira: jira.add_comment(key, body))
        return dict(comment.raw)

    # -- attachments -----------------------------------------------------------------------

    async def open_attachment(
        self, content_url: str, attachment_id: str, *, queue_chunks: int = 4
    ) -> AttachmentStream:
        """Start streaming an attachment's content; the response headers are known on return."""
        await self.connect()  # serverInfo's baseUrl decides the download URL
        url = download_url(self.url, self.site_base_url, content_url, attachment_id)
        return await self.attachments.open(url, queue_chunks=queue_chunks)
