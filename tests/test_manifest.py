"""app.yml asks for exactly the events biagent handles and a reason for each permission."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_manifest_has_the_fields_github_reads() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text())
    assert set(manifest) >= {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "public",
        "default_events",
        "default_permissions",
    }
    assert manifest["hook_attributes"]["url"].endswith("/webhooks/github")
    assert manifest["default_permissions"]["metadata"] == "read"


def test_every_permission_line_says_why() -> None:
    lines = (ROOT / "app.yml").read_text().splitlines()
    start = lines.index("default_permissions:")
    for line in lines[start + 1 :]:
        if line.strip():
            assert "#" in line, f"permission without a reason: {line}"


def test_procfile_runs_web_and_worker_instances_on_all_interfaces() -> None:
    """The split of docs/deploy.md: web instances take requests, workers work (and serve their
    probes on all interfaces, for the platform's health checks)."""
    assert (ROOT / "Procfile").read_text().splitlines() == [
        "web: BIAGENT_ROLE=web HOST=0.0.0.0 python -m bot",
        "worker: BIAGENT_ROLE=worker HOST=0.0.0.0 python -m bot",
    ]
