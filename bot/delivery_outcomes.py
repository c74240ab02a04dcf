"""What working a webhook delivery came to (docs/design.md, Data flow of a webhook).

Pure decisions for bot/dispatcher.py, which does the I/O around them: whether a handler's error
is one a retry can cure, and the delivery's status from its concerns' failures. A payload-shape
error (a field missing, or of a type or value the handler cannot use) fails the same way on
every attempt, so it `rejects` the delivery at once; anything else (the network, GitHub
answering 5xx, the database busy) is retried with a backoff until the attempts run out (`dead`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec


class DeliveryStatus(enum.StrEnum):
    """What working a delivery came to, as the log stores and `delivery_processed` says it."""

    DONE = "done"
    FAILED = "failed"  # will be retried at its retry time
    DEAD = "dead"  # out of attempts (or an error outside every handler): given up
    REJECTED = "rejected"  # its payload can never be worked: finished at once, no retry


@dataclass(frozen=True, slots=True)
class ConcernFailure:
    """One concern's error on a delivery; `rejected` when retrying cannot cure it."""

    concern: str
    error: str
    rejected: bool

    def describe(self) -> str:
        return f"{self.concern}: {'payload rejected: ' if self.rejected else ''}{self.error}"


# The same payload through the same handler raises these again on every attempt.
_SHAPE_ERRORS = (LookupError, TypeError, ValueError, AttributeError, OverflowError)
# The payload was decoded before any handler ran: a decoding error inside one is about
# something else, a garbled answer from GitHub say, which a retry may well cure.
_DECODING_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, msgspec.DecodeError)


def is_payload_shape_error(error: BaseException) -> bool:
    """Whether a handler's error is about the payload's shape: `event.data["comment"]` missing
    (KeyError), `int(None)` (TypeError), `"x".get` (AttributeError), a value a column or `int()`
    refuses (ValueError, OverflowError), or a msgspec.ValidationError converting it."""
    if isinstance(error, msgspec.ValidationError):
        return True
    if isinstance(error, _DECODING_ERRORS):
        return False
    return isinstance(error, _SHAPE_ERRORS)


def delivery_outcome(
    failures: Sequence[ConcernFailure], *, attempts: int, max_attempts: int
) -> DeliveryStatus:
    """The delivery's status after an attempt, from every concern failure that stands (this
    attempt's, and rejections on earlier ones): a retryable one keeps it going while attempts
    remain; only rejections finish it as `rejected`; none at all is `done`."""
    if any(not failure.rejected for failure in failures):
        return DeliveryStatus.FAILED if attempts < max_attempts else DeliveryStatus.DEAD
    return DeliveryStatus.REJECTED if failures else DeliveryStatus.DONE


def failure_summary(failures: Sequence[ConcernFailure]) -> str:
    """The delivery's `last_error`: each concern's failure, in the order they ran."""
    return "; ".join(failure.describe() for failure in failures)
