"""What stopped a step is a typed kind, decided where the SDK's exception is caught."""

from __future__ import annotations

import anthropic
import httpx2

from bot.agents.failures import FailureKind, failure_kind
from bot.agents.loop import AgentContext
from bot.agents.runner import AgentRunner
from tests.agents.conftest import Recorder
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic

MESSAGE_START = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    '"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
)


def error_mid_stream(error_type: str) -> scripted.Reply:
    """A stream that starts, then carries an SSE `error` event (status 200 already sent)."""
    error = (
        "event: error\n"
        f'data: {{"type":"error","error":{{"type":"{error_type}","message":"try later"}}}}\n\n'
    )
    return scripted.Reply(raw_sse=MESSAGE_START + error)


async def test_a_rate_limit_that_outlasts_the_sdk_retries_fails_the_step_as_rate_limited(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(*(scripted.rate_limited(retry_after=0.01) for _ in range(3)))
    result = await runner.run_step("planner", context)
    assert result.status == "failed" and result.failure is FailureKind.RATE_LIMITED
    assert result.error is not None and result.error.startswith("RateLimitError: ")


async def test_persistent_overload_fails_the_step_as_overloaded(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(*(scripted.overloaded(retry_after=0.01) for _ in range(3)))
    result = await runner.run_step("planner", context)
    assert result.status == "failed" and result.failure is FailureKind.OVERLOADED


async def test_an_error_event_mid_stream_is_an_interruption_of_the_kind_the_body_names(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, events: Recorder
) -> None:
    fake.add(*(error_mid_stream("rate_limit_error") for _ in range(3)))
    result = await runner.run_step("planner", context)
    assert result.status == "interrupted" and result.failure is FailureKind.RATE_LIMITED
    interrupted = [e for e in events.take() if e["type"] == "agent_turn_interrupted"]
    assert len(interrupted) == 3


async def test_a_dropped_connection_mid_stream_is_a_broken_stream(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    for _ in range(3):
        fake.add(scripted.tool_use("bash", {"command": "true"}, break_after_events=4))
    result = await runner.run_step("implementer", context)
    assert result.status == "interrupted" and result.failure is FailureKind.STREAM_BROKEN


async def test_a_completed_step_has_no_failure(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(scripted.text("Fine."))
    result = await runner.run_step("planner", context)
    assert result.status == "completed" and result.failure is None


def test_a_connection_error_is_a_connection_failure() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")
    assert failure_kind(anthropic.APIConnectionError(request=request)) is FailureKind.CONNECTION


def test_an_error_of_our_own_code_is_internal_unless_the_caller_says_otherwise() -> None:
    assert failure_kind(KeyError("x")) is FailureKind.INTERNAL
    broken = failure_kind(ConnectionResetError(), otherwise=FailureKind.STREAM_BROKEN)
    assert broken is FailureKind.STREAM_BROKEN
