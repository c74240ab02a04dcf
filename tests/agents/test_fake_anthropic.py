"""The Anthropic fake speaks the protocol the real SDK expects, as recorded from the real API."""

from __future__ import annotations

from anthropic import AsyncAnthropic

from bot.agents.client import build_client
from tests.agents.conftest import MODEL
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic

MESSAGES = [{"role": "user", "content": "What is the weather in SF?"}]


def client_for(fake: FakeAnthropic) -> AsyncAnthropic:
    return build_client(base_url=fake.base_url, api_key="test-key", max_retries=0)


async def test_a_recorded_stream_and_the_fakes_own_parse_alike(fake: FakeAnthropic) -> None:
    client = client_for(fake)

    async def final_message():  # type: ignore[no-untyped-def]
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            return await stream.get_final_message()

    fake.add(scripted.recorded("recorded-tool-use.sse"))
    real = await final_message()
    tool = real.content[0]
    fake.add(scripted.tool_use(tool.name, tool.input, id=tool.id))
    synthesized = await final_message()
    await client.close()
    assert real.stop_reason == synthesized.stop_reason == "tool_use"
    assert tool.input == {"location": "San Francisco, CA", "units": "f"}
    assert [(b.type, b.id, b.name, b.input) for b in synthesized.content] == [
        ("tool_use", tool.id, tool.name, tool.input)
    ]
    for message in (real, synthesized):
        assert message.usage.cache_creation_input_tokens is not None
        assert message.usage.cache_read_input_tokens is not None


async def test_non_streaming_messages_carry_usage_with_cache_fields(fake: FakeAnthropic) -> None:
    fake.add(scripted.text("Sunny."), scripted.text("Still sunny."))
    client = client_for(fake)
    system = [{"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(
        model=MODEL, max_tokens=64, system=system, messages=MESSAGES
    )
    second = await client.messages.create(
        model=MODEL, max_tokens=64, system=system, messages=MESSAGES
    )
    await client.close()
    assert first.content[0].text == "Sunny."
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert [r.body["stream"] if "stream" in r.body else False for r in fake.requests] == [
        False,
        False,
    ]
    assert all(r.api_key == "test-key" for r in fake.requests)


async def test_an_exhausted_script_is_an_error_the_sdk_does_not_retry(fake: FakeAnthropic) -> None:
    client = build_client(base_url=fake.base_url, api_key="test-key", max_retries=3)
    try:
        await client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    except Exception as error:
        assert "fake script exhausted" in str(error)
    else:
        raise AssertionError("expected an error")
    finally:
        await client.close()
    assert len(fake.requests) == 1
