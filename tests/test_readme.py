"""The README stays true: quick start, every setting and its default, every event type, the docs."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import DEFAULT_SETTINGS, Environment, variables
from bot.events.catalogue import message_types, with_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def settings_table() -> dict[str, str | None]:
    """The README's settings table: each variable named in a row, with its default as written
    when the default cell is backquoted values (`127.0.0.1`, `8080` for HOST, PORT), else None."""
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str | None] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]{2,})`", cells[0])
        shown = re.findall(r"`([^`]+)`", cells[2]) if cells[2].startswith("`") else []
        for n, name in enumerate(names):
            rows[name] = shown[n] if len(shown) == len(names) else None
    return rows


def test_quick_start_is_make_run_and_make_test() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make (\w+)", quick_start, flags=re.MULTILINE)
    assert commands == ["run", "test"]


def test_every_setting_read_by_config_is_documented() -> None:
    names = {env.name for env in variables().values()}
    assert "WORKTREE_ROOT" in names
    assert names == set(settings_table()), "the README's settings table and bot/config.py differ"


def test_the_readme_gives_each_setting_the_default_the_model_declares() -> None:
    """A default written in the README, read as the variable would be, is the field's default."""
    table, checked = settings_table(), 0
    for field, env in variables().items():
        written, default = table[env.name], getattr(DEFAULT_SETTINGS, field)
        if written is None or default is None:
            continue  # the cell says in words what leaving the variable unset means
        assert env.rule.read(Environment({env.name: written}), env.name, None) == default, env.name
        checked += 1
    assert checked >= 25


def test_the_readme_links_every_document() -> None:
    documents = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
    assert {"docs/design.md", "docs/architecture.md"} <= set(documents)
    assert [doc for doc in documents if f"({doc})" not in README and f"`{doc}`" not in README] == []


def test_the_events_table_is_the_catalogue() -> None:
    assert with_table(README) == README, "run: python -m bot.events.catalogue --write-readme"
    assert all(f"| `{m.type_name}` |" in README for m in message_types())


def test_every_api_route_is_in_the_readme(tmp_path: Path) -> None:
    from tests.helpers import make_settings
    from web.app import create_app

    app = create_app(make_settings(tmp_path))
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = str(info.get("path") or info.get("formatter") or "")
        if path.startswith("/api/"):
            shown = re.sub(r"\{[^}]+\}", "{id}", path)
            readme = re.sub(r"\{[^}]+\}", "{id}", README)
            assert shown in readme, f"{route.method} {path} is not in the README"
