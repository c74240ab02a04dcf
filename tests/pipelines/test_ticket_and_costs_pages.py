"""The ticket page and the costs page with real pipelines (the pipeline world). Without a
browser; tests/pipelines/test_pages_browser.py opens them in Chromium."""

from __future__ import annotations

import re

from tests.helpers import page_html, section_of
from tests.pipelines.world import PROJECT, REPO, PipelineWorld

HOSTILE = '<img src=x onerror="alert(1)">'
ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"


async def test_the_ticket_page_shows_the_ticket_its_relatives_and_its_pipelines(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    parent = world.jira.add_issue(PROJECT, "The epic")
    key = await world.ticket(
        HOSTILE, description=f"Make it so. {HOSTILE}", labels=("backend",), parent=parent
    )
    blocked = world.jira.add_issue(PROJECT, f"Blocked one {HOSTILE}")
    world.jira.link(key, blocked)
    world.jira.add_attachment(key, f"notes {HOSTILE}.txt", content=b"hello")
    await world.api("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
    created = await world.create(key, start=False)

    html = await page_html(client, f"/tickets/{key.lower()}")
    assert ESCAPED in section_of(html, "ticket") and HOSTILE not in html
    assert f'href="/tickets/{parent}"' in section_of(html, "related")
    assert f'href="/tickets/{blocked}"' in section_of(html, "related") and "blocks" in html
    assert REPO in section_of(html, "repositories")
    assert f'href="/pipelines/{created["id"]}"' in section_of(html, "pipelines")
    assert 'data-api="/api/pipelines"' in html and f'value="{key}"' in html
    assert "<option>backend</option>" in html
    assert f"/api/tickets/{key}/attachments/" in section_of(html, "attachments")


async def test_the_costs_page_sums_a_pipeline_by_day_pipeline_and_installation(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    held = await world.settle((await world.create(await world.ticket(labels=("backend",))))["id"])
    assert held["status"] == "waiting_for_approval"
    ledger = await world.api("GET", f"/api/agent-costs?pipeline_id={held['id']}")
    assert ledger["calls"] > 0

    html = await page_html(client, "/costs")
    spent = f"${ledger['cost_usd']:.4f}"
    assert f'data-day="{world.clock.now().date().isoformat()}"' in html
    row = re.search(rf'<tr data-pipeline="{held["id"]}">.*?</tr>', html, flags=re.DOTALL)
    assert row is not None and spent in row.group(0)
    installation = re.search(r'<tr data-installation="1">.*?</tr>', html, flags=re.DOTALL)
    assert installation is not None and spent in installation.group(0)
