"""Why a step failed or was interrupted, as a typed kind (never read back from error text).

The kind is decided where the exception is caught, from the anthropic SDK's exception classes
and the error type the API put in its body (`rate_limit_error`, `overloaded_error`, which a
stream can also carry mid-way as an SSE `error` event). A step's owner branches on
`StepResult.failure` (the review engine tells a rate limit from other failures); the error text
stays what it was, for people.
"""

from __future__ import annotations

import enum

import anthropic


class FailureKind(enum.StrEnum):
    """What stopped a turn: the API's refusal, its connection, or our own code."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    API_ERROR = "api_error"  # any other refusal of the Messages API
    CONNECTION = "connection"  # the request never got an answer
    STREAM_BROKEN = "stream_broken"  # the answer stopped before its end
    INTERNAL = "internal"  # an exception in biagent's own code


def failure_kind(
    error: BaseException, *, otherwise: FailureKind = FailureKind.INTERNAL
) -> FailureKind:
    """The kind of `error`, as the SDK classified it (class first, then the body's type);
    `otherwise` for an error that is not the SDK's (a broken stream raises the transport's)."""
    if isinstance(error, anthropic.RateLimitError):
        return FailureKind.RATE_LIMITED
    if isinstance(error, anthropic.OverloadedError):
        return FailureKind.OVERLOADED
    if isinstance(error, anthropic.APIStatusError):
        # A mid-stream SSE error comes with the stream's 200 status: only its body says what.
        if error.type == "rate_limit_error":
            return FailureKind.RATE_LIMITED
        if error.type == "overloaded_error":
            return FailureKind.OVERLOADED
        return FailureKind.API_ERROR
    if isinstance(error, anthropic.APIConnectionError):
        return FailureKind.CONNECTION
    return otherwise


def described(error: BaseException) -> str:
    """The error as it is recorded and shown: its class name and message."""
    return f"{type(error).__name__}: {error}"
