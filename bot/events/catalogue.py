"""Every message type the bus carries, derived from the Structs that declare them.

A type is declared next to the code that emits it (`bot/<concern>/events.py`, see
`bot.events.message`); this module imports those modules, lists the registered types and renders
the README's "Events" table from them (`python -m bot.events.catalogue --write-readme`). A new
concern with events adds its module to `EVENT_MODULES`.
"""

from __future__ import annotations

import importlib

import msgspec

from bot.events.message import REGISTRY, Event

EVENT_MODULES: tuple[str, ...] = (
    "bot.dispatcher",
    "bot.github.events",
    "bot.jira.events",
    "bot.agents.events",
    "bot.worktrees.events",
    "bot.reviews.events",
    "bot.pipelines.events",
    "bot.sessions.events",
    "bot.followed",
)


def message_types() -> list[type[Event]]:
    """Every message type of the EVENT_MODULES, in that order, then by declaration."""
    for module in EVENT_MODULES:
        importlib.import_module(module)
    order = {module: position for position, module in enumerate(EVENT_MODULES)}
    listed = [cls for cls in REGISTRY.values() if cls.__module__ in order]
    return sorted(listed, key=lambda cls: order[cls.__module__])


def _field_names(cls: type[Event]) -> list[str]:
    names = []
    for info in msgspec.structs.fields(cls):
        optional = info.default is not msgspec.NODEFAULT or (
            info.default_factory is not msgspec.NODEFAULT
        )
        names.append(f"`{info.encode_name}{'?' if optional else ''}`")
    return names


def _summary(cls: type[Event]) -> str:
    doc = (cls.__doc__ or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


def markdown_table() -> str:
    """The README's Events table: `python -m bot.events.catalogue` prints it."""
    lines = [
        "| type | concern | data fields (`?` optional) | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for cls in message_types():
        fields = ", ".join(_field_names(cls))
        lines.append(f"| `{cls.type_name}` | {cls.concern} | {fields} | {_summary(cls)} |")
    return "\n".join(lines)


README_START = "<!-- events:start -->"
README_END = "<!-- events:end -->"


def with_table(readme: str) -> str:
    """The README text with its events table (between the markers) regenerated."""
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{markdown_table()}\n{README_END}{tail}"


def main(argv: list[str]) -> None:
    from pathlib import Path

    if argv == ["--write-readme"]:
        readme = Path("README.md")
        readme.write_text(with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table())


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
