"""What the server logs when clients misbehave: filters the entry point (`python -m bot`) installs.

A client's fault is not the server's error: a malformed request line, an over-long header or a
body that cannot be decoded, logged by aiohttp.server as an ERROR with its traceback, becomes one
WARNING line (`ClientErrorFilter`). And an error that repeats (a descriptor limit reached, a
flood of bad requests) is written once per window with a count of the ones held back, not once
per occurrence (`RepeatFilter`): under attack the log stays readable and small.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

REPEAT_WINDOW_SECONDS = 60.0
REMEMBERED_KINDS = 1000


def caused_by_client(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from, is a client's fault: a request aiohttp could
    not parse (a 4xx), a body it could not read, a connection the client dropped."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            return True
        if isinstance(error, RequestPayloadError | ConnectionError):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class ClientErrorFilter(logging.Filter):
    """On aiohttp.server: a record whose exception is the client's fault becomes one WARNING
    line, the exception's own message in place of its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not caused_by_client(error):
            return True
        reason = " ".join(str(error).split())[:300]
        record.msg = f"{record.getMessage()}: {type(error).__name__}: {reason}"
        record.args = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


class _Kind:
    __slots__ = ("held_back", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.held_back = 0


class RepeatFilter(logging.Filter):
    """Lets through the first warning or error of a kind (logger, level, message template,
    exception type) in each `window` seconds; the rest are counted, and the next one let through
    says how many were held back. INFO and below always pass (the access log is one template)."""

    def __init__(
        self,
        window: float = REPEAT_WINDOW_SECONDS,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window = window
        self._now = now
        self._kinds: OrderedDict[tuple[str, int, str, str], _Kind] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        error_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.name, record.levelno, str(record.msg), error_type)
        now = self._now()
        kind = self._kinds.get(key)
        if kind is not None and now - kind.since < self.window:
            kind.held_back += 1
            return False
        if kind is not None and kind.held_back:
            record.msg = f"{record.msg} [{kind.held_back} more like this held back]"
        self._kinds[key] = _Kind(now)
        self._kinds.move_to_end(key)
        while len(self._kinds) > REMEMBERED_KINDS:
            self._kinds.popitem(last=False)
        return True


def install(window: float = REPEAT_WINDOW_SECONDS) -> None:
    """Put the filters in place: on aiohttp's server logger, and on every root handler."""
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())
    repeats = RepeatFilter(window)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeats)
