"""Which handler errors a retry can cure, and a delivery's status from its concerns' failures."""

from __future__ import annotations

import http
import json
from collections.abc import Callable

import gidgethub
import msgspec
import pytest

from bot.delivery_outcomes import (
    ConcernFailure,
    DeliveryStatus,
    delivery_outcome,
    is_payload_shape_error,
)

pytestmark = pytest.mark.both_databases


def raised(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    "error",
    [
        raised(lambda: {}["comment"]),
        raised(lambda: [][0]),
        raised(lambda: int(None)),  # type: ignore[arg-type]
        raised(lambda: int("x")),
        raised(lambda: "login".get("id")),  # type: ignore[attr-defined]
        raised(lambda: msgspec.convert({"id": "1"}, dict[str, int])),
    ],
    ids=["KeyError", "IndexError", "TypeError", "ValueError", "AttributeError", "Validation"],
)
def test_errors_about_the_payload_shape_are_not_retried(error: Exception) -> None:
    assert is_payload_shape_error(error)


@pytest.mark.parametrize(
    "error",
    [
        gidgethub.GitHubBroken(http.HTTPStatus(502)),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
        raised(lambda: json.loads("<html>502 Bad Gateway")),  # a garbled answer, not the payload
        raised(lambda: b"\xff".decode("utf-8")),
        RuntimeError("database is locked"),
    ],
    ids=["GitHub 502", "reset", "timeout", "JSONDecodeError", "UnicodeDecodeError", "other"],
)
def test_network_github_and_other_errors_are_retried(error: Exception) -> None:
    assert not is_payload_shape_error(error)


def test_a_delivery_is_rejected_only_when_every_standing_failure_is_a_rejection() -> None:
    shape = ConcernFailure("reviews", "KeyError: 'comment'", rejected=True)
    broken = ConcernFailure("jira", "GitHubBroken: 502", rejected=False)
    outcome = delivery_outcome
    assert outcome([], attempts=1, max_attempts=3) is DeliveryStatus.DONE
    assert outcome([shape], attempts=1, max_attempts=3) is DeliveryStatus.REJECTED
    assert outcome([shape, broken], attempts=1, max_attempts=3) is DeliveryStatus.FAILED
    assert outcome([shape, broken], attempts=3, max_attempts=3) is DeliveryStatus.DEAD
    assert outcome([broken], attempts=2, max_attempts=3) is DeliveryStatus.FAILED
