"""The base of every message type the event bus carries (docs/design.md, Events; docs/design.md).

A message type is a msgspec Struct declared next to the code that emits it, in its concern's
`events.py`: the class names its wire `type_name` and `concern` as ClassVars, its docstring's
first line says what it means, and its fields are the envelope's `data`. Declaring the subclass
registers it; `bot.events.catalogue` lists every registered type and renders the README table.
Fields with a default are optional: they are sent as null when not given.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

REGISTRY: dict[str, type[Event]] = {}


class DuplicateMessageType(TypeError):
    """Two Structs claimed the same wire type name."""


class Event(msgspec.Struct, kw_only=True):
    """An event's payload. Subclasses set `type_name` and `concern` (ClassVars)."""

    type_name: ClassVar[str]
    concern: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type_name")
        if name is None:
            return
        known = REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise DuplicateMessageType(f"{name!r} is declared by {known!r} and {cls!r}")
        REGISTRY[name] = cls


def encode(event: Event) -> bytes:
    """The event's `data` as compact JSON."""
    return msgspec.json.encode(event)
