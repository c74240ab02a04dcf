"""Attachment downloads: streamed from Jira in bounded chunks, only ever from JIRA_URL.

The `jira` library has no public call that streams a body (its session reads the whole
response to look for a login page), so downloads go through a plain `requests` session built
with the same credentials the library client was built with: basic auth for email + API token,
the library's own `TokenAuth` (a bearer token) for a personal access token. A worker thread
reads the body into a small queue that the event loop drains; the API route
(web/api/tickets.py) passes the chunks on to the browser.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from jira import JIRAError
from jira.client import TokenAuth
from requests.auth import HTTPBasicAuth

from bot.jira.errors import translate

ATTACHMENT_CHUNK = 64 * 1024
# How long a worker thread waits on a full queue before looking whether the reader left.
_STOP_POLL_S = 1.0


def authorized_session(
    *, email: str | None, token: str, on_response: Callable[..., None]
) -> requests.Session:
    """A `requests` session with the library client's credentials and our request counter."""
    session = requests.Session()
    session.auth = HTTPBasicAuth(email, token) if email else TokenAuth(token)
    session.hooks["response"].append(on_response)
    return session


def download_url(
    jira_url: str, site_base_url: str | None, content_url: str, attachment_id: str
) -> str:
    """Where to fetch an attachment: always on JIRA_URL, whatever host Jira's URL names.

    Jira writes content URLs with its own base URL (serverInfo's baseUrl), which behind a
    proxy or under an alias (localhost and 127.0.0.1) is not JIRA_URL. Only the part after
    that base is kept, put under JIRA_URL, so the credentials only ever go to the configured
    site. A URL not under Jira's base keeps its path: as it is when it is already under
    JIRA_URL's context path, else put under it.
    """
    ours = urlsplit(jira_url)
    if site_base_url and content_url.startswith(site_base_url + "/"):
        return jira_url + content_url[len(site_base_url) :]
    theirs = urlsplit(content_url)
    path = theirs.path
    if not path.startswith("/"):
        path = f"/rest/api/2/attachment/content/{attachment_id}"
    prefix = ours.path.rstrip("/")
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        path = prefix + path
    return urlunsplit((ours.scheme, ours.netloc, path, theirs.query, ""))


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
                raise translate(item, "attachment") from item
            yield item

    def close(self) -> None:
        """Stop the download (the reader went away); the worker thread ends soon after."""
        self._stop.set()
        while not self._queue.empty():
            self._queue.get_nowait()


@dataclass
class _ChunkFeeder:
    """The worker thread's end of the queue: puts block while it is full, until stopped."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[bytes | BaseException | None]
    stop: threading.Event

    def deliver(self, item: bytes | BaseException | None) -> bool:
        """Queue `item`; False when the reader has gone (stop the download)."""
        if self.stop.is_set():
            return False
        future = asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop)
        while True:
            try:
                future.result(timeout=_STOP_POLL_S)
                return True
            except TimeoutError:
                if self.stop.is_set():
                    future.cancel()
                    return False


class AttachmentDownloader:
    """Opens attachment downloads on a thread pool of its own (a slow reader holds a thread)."""

    def __init__(self, *, session: requests.Session, workers: int, timeout_s: float) -> None:
        self.session = session
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="jira-attachment"
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    async def open(self, url: str, *, queue_chunks: int = 4) -> AttachmentStream:
        """Start streaming `url`; the response headers are known on return.

        At most `queue_chunks` chunks of 64 KiB are in memory whatever the file's size, and a
        slow reader slows the download.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=queue_chunks)
        feeder = _ChunkFeeder(loop, queue, threading.Event())
        opened: asyncio.Future[tuple[str | None, int | None]] = loop.create_future()
        loop.run_in_executor(self._executor, self._download, url, opened, feeder)
        try:
            content_type, content_length = await opened
        except (JIRAError, requests.RequestException) as error:
            raise translate(error, "attachment") from error
        return AttachmentStream(content_type, content_length, queue, feeder.stop)

    def _get(self, url: str) -> requests.Response:
        # identity: a compressed body would make the Content-Length passed on wrong.
        response = self.session.get(
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
        return response

    def _download(
        self,
        url: str,
        opened: asyncio.Future[tuple[str | None, int | None]],
        feeder: _ChunkFeeder,
    ) -> None:
        """In a worker thread: open the response, hand its headers over, then feed the body."""
        loop = feeder.loop
        try:
            response = self._get(url)
        except Exception as error:
            loop.call_soon_threadsafe(_set_exception, opened, error)
            return
        try:
            length = response.headers.get("Content-Length")
            headers = (response.headers.get("Content-Type"), int(length) if length else None)
            loop.call_soon_threadsafe(_set_result, opened, headers)
            for chunk in response.iter_content(ATTACHMENT_CHUNK):
                if chunk and not feeder.deliver(chunk):
                    return
            feeder.deliver(None)
        except Exception as error:
            feeder.deliver(error)
        finally:
            response.close()


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
