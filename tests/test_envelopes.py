"""Every GitHub event a concern handles declares the fields its handlers rely on
(bot/github/envelope.py); GitHub's own payloads fit them (tests/test_webhooks_github.py sends
every fixture through the intake and the dispatcher)."""

from __future__ import annotations

from bot.github.envelope import ENVELOPES
from bot.routers import concerns


def test_every_github_event_a_concern_handles_has_its_envelope() -> None:
    handled = set()
    for concern in concerns():
        if "github" in concern.sources:
            # gidgethub keeps a router's routes in these two tables (and merges them).
            handled |= set(concern.router._shallow_routes) | set(concern.router._deep_routes)
    assert handled and handled <= set(ENVELOPES), handled - set(ENVELOPES)
