"""How instants are stored: ISO 8601 UTC text with microseconds, which sorts as it compares."""

from __future__ import annotations

from datetime import UTC, datetime


def to_text(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
