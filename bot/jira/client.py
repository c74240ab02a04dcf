"""The JIRA REST client: the synchronous `jira` library, run in worker threads.

Every call goes to a small thread pool, so the event loop never blocks on Jira. The library's
own retry loop is switched off (it sleeps in the thread, up to minutes on a connection error);
instead a 429 or 503 is retried here after its `Retry-After`, slept on the injected clock, and a
connection error fails at once with a clear message (the next scheduled sync is the retry).
Errors come out as the small hierarchy below, which the API and the CLI map to their answers.

Server/Data Center and Cloud differ in search: Server pages `GET /search` by startAt, Cloud
removed that endpoint in 2025 (410 Gone) and pages `GET /search/jql` by nextPageToken. The
deployment type comes from `serverInfo` when the client connects.

The library translates field names through a cache it fills from `GET /field` before its
first search; the builder fills that cache with the fields biagent asks for (their JQL names
are their ids), so no search depends on that extra call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from jira import JIRA, JIRAError
from jira.resilientsession import ResilientSession

from bot.clock import Clock
from bot.config import Secret
from bot.jira.issues import SYNC_FIELDS

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = (429, 503)
MAX_RETRIES = 5
DEFAULT_RETRY_AFTER_S = 5.0
REQUEST_TIMEOUT_S = 60.0
ATTACHMENT_CHUNK = 64 * 1024
# Largest id-only pages: Server's default search limit; Cloud's for `fields=id` searches.
SERVER_ID_PAGE = 1000
CLOUD_ID_PAGE = 5000
# Statuses meaning "this site has no such endpoint": not worth asking again.
ENDPOINT_MISSING = (404, 405, 410, 501)


class JiraError(Exception):
    """Something went wrong talking to Jira; `status` is the HTTP status when there was one."""

    status: int | None = None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status if status is not None else type(self).status


class JiraUnavailable(JiraError):
    """Jira cannot be reached (connection refused, DNS, timeout)."""


class JiraAuthError(JiraError):
    """Jira refused the credentials (401) or the account may not do this (403)."""


class JiraNotFound(JiraError):
    """No such issue (or not visible to the account)."""

    status = 404


class JiraBadRequest(JiraError):
    """Jira refused the request as malformed: most often a bad JQL query."""

    status = 400


class JiraRateLimited(JiraError):
    """Still 429 after the retries."""

    status = 429


def _translate(error: Exception, what: str) -> JiraError:
    if isinstance(error, JiraError):
        return error
    if isinstance(error, JIRAError):
        status = error.status_code
        message = (error.text or "").strip() or f"HTTP {status}"
        if status in (401, 403):
            return JiraAuthError(f"{what}: Jira refused the credentials ({message})", status)
        if status == 404:
            return JiraNotFound(f"{what}: not found ({message})", status)
        if status == 400:
            return JiraBadRequest(f"{what}: {message}", status)
        if status == 429:
            return JiraRateLimited(f"{what}: rate limited by Jira", status)
        return JiraError(f"{what}: Jira answered {status}: {message}", status)
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return JiraUnavailable(f"{what}: cannot reach Jira ({type(error).__name__})")
    return JiraError(f"{what}: {type(error).__name__}: {error}")


def _retry_after(error: JIRAError) -> float:
    response = error.response
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class SearchPage:
    issues: list[dict[str, Any]]
    total: int | None  # Server only; Cloud's search/jql does not count
    next_token: str | None  # Cloud only
    is_last: bool


@dataclass
class AttachmentStream:
    """An attachment's content arriving from a worker thread in bounded chunks."""

    content_type: str | None
    content_length: int | None
    _queue: asyncio.Queue[bytes | BaseException | None]
    _stop: threading.Event

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise _translate(item, "attachment") from item  # type: ignore[arg-type]
            yield item

    def close(self) -> None:
        """Stop the download (the reader went away); the worker thread ends soon after."""
        self._stop.set()
        while not self._queue.empty():
            self._queue.get_nowait()


class JiraClient:
    """One connection to one Jira site, shared by the sync, the webhooks, the API and the CLI."""

    def __init__(
        self,
        *,
        url: str,
        email: str | None,
        api_token: Secret,
        clock: Clock,
        workers: int = 4,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.email = email
        self.api_token = api_token
        self.clock = clock
        self.timeout_s = timeout_s
        self.requests_made = 0
        self.deployment: str | None = None
        self.approximate_count_available = True
        self.site_base_url: str | None = None  # serverInfo's baseUrl: how Jira names itself
        self._jira: JIRA | None = None
        self._connect_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jira")
        self._stream_executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="jira-attachment"
        )

    @property
    def is_cloud(self) -> bool:
        return self.deployment == "Cloud"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._stream_executor.shutdown(wait=False, cancel_futures=True)
        if self._jira is not None:
            with contextlib.suppress(Exception):
                self._jira.close()
            self._jira = None

    # -- plumbing ------------------------------------------------------------------------

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests_made += 1

    def _build(self) -> JIRA:
        # Email + API token is Cloud's basic auth; a token alone is a Server/DC personal token.
        auth: dict[str, Any] = (
            {"basic_auth": (self.email, self.api_token.reveal())}
            if self.email
            else {"token_auth": self.api_token.reveal()}
        )
        jira = JIRA(
            server=self.url,
            get_server_info=False,
            max_retries=0,
            timeout=self.timeout_s,
            logging=False,
            **auth,
        )
        jira._session.hooks["response"].append(self._count)
        # System fields' JQL names are their ids; a non-empty cache is never fetched again.
        jira._fields_cache_value = {name: name for name in (*SYNC_FIELDS, "id", "key")}
        return jira

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
                # The library reads these two itself to pick Cloud's endpoints.
                jira.deploymentType = self.deployment
                jira._version = tuple(info.get("versionNumbers") or (0, 0, 0))
                self._jira = jira
        return self._jira

    async def _in_thread(self, what: str, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function)
        except (JIRAError, requests.RequestException) as error:
            raise _translate(error, what) from error

    async def _retrying(self, what: str, function: Callable[[], T]) -> T:
        """Run a call; on 429/503 wait Retry-After (on our clock) and try again."""
        attempt = 0
        while True:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor, function)
            except JIRAError as error:
                if error.status_code not in RETRY_STATUSES or attempt >= MAX_RETRIES:
                    raise _translate(error, what) from error
                delay = _retry_after(error)
                attempt += 1
                log.warning(
                    "%s: Jira answered %s, retrying in %.0fs (%d/%d)",
                    what,
                    error.status_code,
                    delay,
                    attempt,
                    MAX_RETRIES,
                )
                await self.clock.sleep(delay)
            except requests.RequestException as error:
                raise _translate(error, what) from error

    async def call(self, what: str, function: Callable[[JIRA], T]) -> T:
        """Run `function(jira_library_client)` in a worker thread, with the retry policy."""
        jira = await self.connect()
        return await self._retrying(what, lambda: function(jira))

    # -- reads -----------------------------------------------------------------------------

    async def server_info(self) -> dict[str, Any]:
        return await self.call("serverInfo", lambda jira: jira.server_info())

    async def myself(self) -> dict[str, Any]:
        return await self.call("myself", lambda jira: jira.myself())

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
            assert isinstance(found, dict)
            next_token = found.get("nextPageToken")
            return SearchPage(
                list(found.get("issues") or []),
                None,
                next_token,
                bool(found.get("isLast", next_token is None)) or not next_token,
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

    async def count(self, jql: str) -> int | None:
        """How many issues match (Cloud: Jira's approximate count).

        None when Cloud's approximate-count cannot answer (a site or proxy without it, or any
        other HTTP error): the caller lists ids instead. A missing endpoint is not asked again.
        """
        await self.connect()
        if self.is_cloud:
            if not self.approximate_count_available:
                return None
            try:
                counted = await self.call(
                    "count",
                    lambda jira: jira.approximate_issue_count(jql),  # type: ignore[arg-type]
                )
            except JiraError as error:
                if error.status is None:
                    raise
                if error.status in ENDPOINT_MISSING:
                    self.approximate_count_available = False
                log.warning("Jira's approximate count failed (%s); listing ids instead", error)
                return None
            return int(counted)  # type: ignore[arg-type]
        found = await self.call(
            "count",
            lambda jira: jira.search_issues(jql, maxResults=1, fields=["id"], json_result=True),
        )
        return int(found.get("total") or 0)

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
        start_at = 0
        while True:
            page = await self.call(
                f"changelog {key_or_id}",
                lambda jira, start_at=start_at: jira._get_json(
                    f"issue/{key_or_id}/changelog", params={"startAt": start_at, "maxResults": 100}
                ),
            )
            values = list(page.get("values") or [])
            histories.extend(values)
            start_at += len(values)
            if not values or page.get("isLast", start_at >= int(page.get("total") or 0)):
                return histories

    async def transitions(self, key: str) -> list[dict[str, Any]]:
        return list(await self.call(f"transitions {key}", lambda jira: jira.transitions(key)))

    # -- writes ----------------------------------------------------------------------------

    async def update_fields(self, key: str, fields: dict[str, Any]) -> None:
        def update(jira: JIRA) -> None:
            jira.issue(key, fields="summary").update(fields=fields)

        await self.call(f"update {key}", update)

    async def transition(self, key: str, transition_id: str) -> None:
        await self.call(f"transition {key}", lambda jira: jira.transition_issue(key, transition_id))

    async def add_comment(self, key: str, body: str) -> dict[str, Any]:
        comment = await self.call(f"comment {key}", lambda jira: jira.add_comment(key, body))
        return dict(comment.raw)

    # -- attachments -----------------------------------------------------------------------

    def download_url(self, content_url: str, attachment_id: str) -> str:
        """Where to fetch an attachment: always on JIRA_URL, whatever host Jira's URL names.

        Jira writes content URLs with its own base URL (serverInfo's baseUrl), which behind a
        proxy or under an alias (localhost and 127.0.0.1) is not JIRA_URL. Only the part after
        that base is kept, put under JIRA_URL, so the credentials only ever go to the configured
        site. A URL not under Jira's base keeps its path: as it is when it is already under
        JIRA_URL's context path, else put under it.
        """
        ours = urlsplit(self.url)
        base = self.site_base_url
        if base and content_url.startswith(base + "/"):
            return self.url + content_url[len(base) :]
        theirs = urlsplit(content_url)
        path = theirs.path
        if not path.startswith("/"):
            path = f"/rest/api/2/attachment/content/{attachment_id}"
        prefix = ours.path.rstrip("/")
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            path = prefix + path
        return urlunsplit((ours.scheme, ours.netloc, path, theirs.query, ""))

    async def open_attachment(
        self, content_url: str, attachment_id: str, *, queue_chunks: int = 4
    ) -> AttachmentStream:
        """Start streaming an attachment's content; the response headers are known on return.

        A worker thread reads the body in 64 KiB chunks into a bounded queue, so at most a few
        chunks are in memory whatever the file's size, and a slow reader slows the download.
        """
        jira = await self.connect()
        url = self.download_url(content_url, attachment_id)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=queue_chunks)
        stop = threading.Event()
        opened: asyncio.Future[tuple[str | None, int | None]] = loop.create_future()

        def deliver(item: bytes | BaseException | None) -> bool:
            if stop.is_set():
                return False
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    future.result(timeout=1.0)
                    return True
                except TimeoutError:
                    if stop.is_set():
                        future.cancel()
                        return False

        def download() -> None:
            session = jira._session
            try:
                # Past ResilientSession.request on purpose: it reads `response.content` (the
                # whole body) to look for a login error, which would defeat streaming.
                # identity: a compressed body would make the Content-Length passed on wrong.
                response = super(ResilientSession, session).request(
                    "GET",
                    url,
                    stream=True,
                    headers={"Accept": "*/*", "Accept-Encoding": "identity"},
                    timeout=self.timeout_s,
                )
                if not response.ok:
                    response.close()
                    raise JIRAError(
                        f"attachment download answered {response.status_code}",
                        status_code=response.status_code,
                        url=url,
                        response=response,
                    )
            except Exception as error:
                loop.call_soon_threadsafe(_set_exception, opened, error)
                return
            try:
                length = response.headers.get("Content-Length")
                loop.call_soon_threadsafe(
                    _set_result,
                    opened,
                    (response.headers.get("Content-Type"), int(length) if length else None),
                )
                for chunk in response.iter_content(ATTACHMENT_CHUNK):
                    if chunk and not deliver(chunk):
                        return
                deliver(None)
            except Exception as error:
                deliver(error)
            finally:
                response.close()

        loop.run_in_executor(self._stream_executor, download)
        try:
            content_type, content_length = await opened
        except (JIRAError, requests.RequestException) as error:
            raise _translate(error, "attachment") from error
        return AttachmentStream(content_type, content_length, queue, stop)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
