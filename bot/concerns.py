"""What a concern is to the dispatcher: its router, and what each of its handlers gets.

A concern (docs/architecture.md, "Dispatcher and concerns") is one package's gidgethub Router,
listed once in bot/routers.py. Its handlers are `async def on_x(event, gh, context)`, where
`context` is a `HandlerContext`. This module imports nothing of the features at run time, so a
feature package can name the context without importing the dispatcher (and through it every
other feature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gidgethub import routing

from storage.deliveries import Delivery

if TYPE_CHECKING:
    from bot.services import Services


@dataclass(frozen=True, slots=True)
class Concern:
    """One concern's webhook handlers, for the sources it listens to."""

    name: str
    router: routing.Router
    sources: frozenset[str] = frozenset({"github"})


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a webhook handler gets beside the event and its GitHub client."""

    services: Services
    delivery: Delivery
