"""The README stays true: quick start, every setting, every event type."""

from __future__ import annotations

import re
from pathlib import Path

from bot.events.catalogue import message_types, with_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CONFIG = (Path(__file__).resolve().parent.parent / "bot" / "config.py").read_text()


def test_quick_start_is_make_run_and_make_test() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make (\w+)", quick_start, flags=re.MULTILINE)
    assert commands == ["run", "test"]


def test_every_setting_read_by_config_is_documented() -> None:
    names = set(re.findall(r'(?:reader\.\w+|environ\.get)\("([A-Z][A-Z0-9_]{2,})"', CONFIG))
    undocumented = {name for name in names if f"`{name}`" not in README}
    assert not undocumented


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
