"""The Anthropic client: the real SDK on its aiohttp HTTP client (one HTTP stack in the service).

Retries of rate limits (429), overload (529), 5xx and connection errors are the SDK's own
(`max_retries`, exponential backoff that honours `retry-after` / `retry-after-ms`); biagent adds
no second retry layer. ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are read by the SDK itself;
tests pass the fake's URL and a dummy key explicitly.
"""

from __future__ import annotations

from anthropic import AsyncAnthropic, DefaultAioHttpClient

from bot.config import DEFAULT_SETTINGS

DEFAULT_MAX_RETRIES = DEFAULT_SETTINGS.agent_max_retries
DEFAULT_TIMEOUT_S = 600.0


def build_client(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AsyncAnthropic:
    return AsyncAnthropic(
        api_key=api_key,
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout_s,
        http_client=DefaultAioHttpClient(timeout=timeout_s),
    )
