"""What can go wrong talking to Jira, as a small hierarchy the API and the CLI map to answers.

The client (bot/jira/client.py) turns the library's `JIRAError` and `requests`' connection
errors into these with `translate`; `retry_after` reads how long a throttled answer asks us to
wait, for the one retry policy (bot/retry.py).
"""

from __future__ import annotations

import requests
from jira import JIRAError

# Waited when a 429 or 503 says nothing (or nonsense) in Retry-After.
DEFAULT_RETRY_AFTER_S = 5.0
# Jira's answers worth another attempt after a wait: throttled, or briefly unavailable.
RETRY_STATUSES = (429, 503)


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


def translate(error: BaseException, what: str) -> JiraError:
    """`error` (the library's, requests', or ours) as a JiraError saying what was being done."""
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


def is_throttled(error: BaseException) -> bool:
    """Whether Jira answered 429 or 503: the same call may succeed after a wait."""
    return isinstance(error, JIRAError) and error.status_code in RETRY_STATUSES


def retry_after(error: BaseException) -> float | None:
    """The seconds a throttled answer asks us to wait (Retry-After, else a default)."""
    if not isinstance(error, JIRAError):
        return None
    response = error.response
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
