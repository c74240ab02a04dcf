"""jira_cli and github_cli (bot/pipelines/agent_tools.py): what a pipeline step may read and write.

jira_cli reads a real SQLite mirror filled the way the sync fills it (the real JiraClient
fetches from the Jira protocol fake, bot/jira/issues.py normalizes, storage stores) and comments
through the real client. github_cli reads through the real gidgethub client of a real GitHubApp
against the GitHub protocol fake, seeded with GitHub's own example objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.agents.tool_registry import Tool, ToolContext, ToolRegistry, ToolResult
from bot.clock import ManualClock
from bot.config import Secret
from bot.github.app import GitHubApp
from bot.jira.client import JiraClient
from bot.jira.issues import SYNC_FIELDS, ticket_from_issue
from bot.pipelines.agent_tools import (
    GITHUB_TOOL,
    JIRA_TOOL,
    MAX_OUTPUT_CHARS,
    newest_within,
    pipeline_tools,
)
from storage import pipelines, tickets
from storage.database import Database
from tests.fakes.github import FakeGitHub, api_example
from tests.fakes.jira import FakeJira

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REPO = "octo/repo"
INSTALLATION = 31


async def a_pipeline(db: Database, ticket_key: str = "ACME-1") -> int:
    created = await pipelines.create_pipeline(
        db, ticket_key=ticket_key, repositories=[REPO], trigger="api", created_by=None, now=NOW
    )
    return created.id


def tools_of(
    db: Database,
    pipeline_id: int,
    *,
    ticket_key: str = "ACME-1",
    jira: JiraClient | None = None,
    github: GitHubApp | None = None,
) -> dict[str, Tool]:
    built = pipeline_tools(
        db=db,
        pipeline_id=pipeline_id,
        ticket_key=ticket_key,
        repository_full_name=REPO,
        installation_id=INSTALLATION,
        jira=jira,
        github=github,
    )
    return {tool.name: tool for tool in built}


async def jira_cli(
    db: Database, *, ticket_key: str = "ACME-1", jira: JiraClient | None = None
) -> Tool:
    """jira_cli of a new pipeline on `ticket_key`."""
    pipeline_id = await a_pipeline(db, ticket_key)
    return tools_of(db, pipeline_id, ticket_key=ticket_key, jira=jira)[JIRA_TOOL]


async def github_cli(db: Database, github: GitHubApp | None, *, opened: bool = True) -> Tool:
    """github_cli of a new pipeline on ACME-1, which opened #7 in REPO when `opened`."""
    pipeline_id = await a_pipeline(db)
    if opened:
        url = f"https://github.com/{REPO}/pull/7"
        recorded = pipelines.record_pull_request(pipeline_id, REPO, 7, url, draft=False, now=NOW)
        await db.write(*recorded)
    return tools_of(db, pipeline_id, github=github)[GITHUB_TOOL]


async def call(tool: Tool, tmp_path: Path, **arguments: Any) -> ToolResult:
    """One call as the loop makes it: the arguments checked against the schema first."""
    assert tool.validation_error(arguments) is None
    assert tool.handler is not None
    return await tool.handler(arguments, ToolContext(worktree=tmp_path))


# -- jira_cli ----------------------------------------------------------------------------------


@pytest.fixture
async def jira(fake_jira: FakeJira, manual_clock: ManualClock) -> AsyncIterator[JiraClient]:
    client = JiraClient(
        url=fake_jira.url,
        email=fake_jira.email,
        api_token=Secret(fake_jira.token),
        clock=manual_clock,
    )
    yield client
    client.close()


@pytest.fixture
async def mirrored(db: Database, fake_jira: FakeJira, jira: JiraClient) -> FakeJira:
    """ACME-1 (the pipeline's, two comments) blocks ACME-2; ACME-3 is linked to neither."""
    own = fake_jira.add_issue("ACME", "Export invoices as CSV", description="Finance wants CSV.")
    linked = fake_jira.add_issue("ACME", "Invoice schema migration", status="In Progress")
    fake_jira.add_issue("ACME", "Salary review for the team")
    fake_jira.link(own, linked)
    for comment_id, author, body in (("501", "Ann Lee", "Use semicolons."), ("502", "Bo", "Ok")):
        fake_jira.issue(own).comments.append(
            {"id": comment_id, "author": author, "body": body, "created_ms": fake_jira.tick()}
        )
    records = [
        ticket_from_issue(await jira.issue(key, fields=SYNC_FIELDS))
        for key in ("ACME-1", "ACME-2", "ACME-3")
    ]
    await tickets.store_tickets(db, records, now=NOW)
    return fake_jira


async def test_ticket_reads_the_pipeline_ticket_from_the_mirror(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db)
    read = await call(tool, tmp_path, action="ticket")
    assert not read.is_error
    assert read.content.startswith("ACME-1: Export invoices as CSV\nstatus: To Do")
    assert "description:\nFinance wants CSV." in read.content
    assert "comments: 2" in read.content


async def test_comments_are_read_from_the_mirror_oldest_first(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db)
    read = await call(tool, tmp_path, action="comments")
    assert read.content.splitlines()[0] == "ACME-1: 2 comment(s), oldest first"
    first, second = read.content.index("Use semicolons."), read.content.index("Ok")
    assert "[501] Ann Lee at " in read.content and first < second


async def test_links_name_each_linked_ticket_with_its_relation(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db)
    read = await call(tool, tmp_path, action="links")
    assert read.content == "ACME-1 blocks ACME-2: Invoice schema migration [In Progress]"


async def test_a_ticket_linked_to_the_pipeline_ticket_can_be_read(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db)
    read = await call(tool, tmp_path, action="ticket", key="acme-2")
    links = await call(tool, tmp_path, action="links", key="ACME-2")
    assert read.content.startswith("ACME-2: Invoice schema migration\nstatus: In Progress")
    assert links.content == "ACME-2 is blocked by ACME-1: Export invoices as CSV [To Do]"


async def test_a_ticket_not_linked_to_the_pipeline_ticket_is_refused(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db)
    refused = await call(tool, tmp_path, action="comments", key="ACME-3")
    assert refused.is_error
    assert refused.content.startswith("ACME-3 is not linked to this pipeline's ticket ACME-1")
    assert "Salary review" not in refused.content


async def test_a_linked_ticket_outside_the_mirror_is_named_but_not_read(
    db: Database, mirrored: FakeJira, jira: JiraClient, tmp_path: Path
) -> None:
    mirrored.add_issue("LEGAL", "Retention rules for invoices")
    mirrored.link("ACME-1", "LEGAL-1", "Relates")
    refreshed = ticket_from_issue(await jira.issue("ACME-1", fields=SYNC_FIELDS))
    await tickets.store_tickets(db, [refreshed], now=NOW)  # LEGAL is a project not synced
    tool = await jira_cli(db)
    missing = await call(tool, tmp_path, action="ticket", key="LEGAL-1")
    assert missing.is_error
    assert missing.content == (
        "ACME-1 relates to LEGAL-1: Retention rules for invoices [To Do]; LEGAL-1 itself is not "
        "in the local JIRA mirror (a project biagent does not sync)"
    )


async def test_a_pipeline_ticket_missing_from_the_mirror_is_a_clear_tool_error(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db, ticket_key="OPS-9")
    missing = await call(tool, tmp_path, action="ticket")
    assert missing.is_error
    assert missing.content.startswith("OPS-9 is not in the local JIRA mirror yet")


async def test_a_comment_is_posted_on_the_pipeline_ticket_through_jira(
    db: Database, mirrored: FakeJira, jira: JiraClient, tmp_path: Path
) -> None:
    tool = await jira_cli(db, jira=jira)
    posted = await call(tool, tmp_path, action="comment", body="The plan is ready for review.")
    assert not posted.is_error
    comment = mirrored.issue("ACME-1").comments[-1]
    assert comment["body"] == "The plan is ready for review."
    assert posted.content.startswith(f"comment {comment['id']} added to ACME-1")


async def test_a_comment_on_another_ticket_is_refused_even_a_linked_one(
    db: Database, mirrored: FakeJira, jira: JiraClient, tmp_path: Path
) -> None:
    tool = await jira_cli(db, jira=jira)
    refused = await call(tool, tmp_path, action="comment", key="ACME-2", body="Hello there")
    assert refused.is_error
    assert refused.content == "jira_cli comments only on this pipeline's ticket ACME-1, not ACME-2"
    posts = [r for r in mirrored.requests if r.method == "POST" and r.path.endswith("/comment")]
    assert (posts, mirrored.issue("ACME-2").comments) == ([], [])


async def test_without_a_jira_client_reads_work_and_a_comment_is_a_tool_error(
    db: Database, mirrored: FakeJira, tmp_path: Path
) -> None:
    tool = await jira_cli(db, jira=None)
    read = await call(tool, tmp_path, action="ticket")
    refused = await call(tool, tmp_path, action="comment", body="Anyone there?")
    assert read.content.startswith("ACME-1: Export invoices as CSV")
    assert refused.is_error
    assert refused.content == "JIRA is not configured for biagent: no comment can be posted"


# -- github_cli --------------------------------------------------------------------------------


@pytest.fixture
async def github(
    fake_github: FakeGitHub, app_key: tuple[str, str], manual_clock: ManualClock
) -> AsyncIterator[GitHubApp]:
    async with aiohttp.ClientSession() as session:
        yield GitHubApp(
            app_id=str(fake_github.app_id),
            private_key=Secret(app_key[0]),
            api_url=fake_github.base_url,
            session=session,
            clock=manual_clock,
        )


@pytest.fixture
def pull(fake_github: FakeGitHub) -> dict[str, Any]:
    """PR #7 on GitHub with a check run, an issue comment and a review comment; #8 beside it."""
    opened = api_example("pulls-get")
    opened.update({"number": 7, "title": "ACME-1: export invoices as CSV"})
    fake_github.add_pull_request(REPO, opened)
    fake_github.add_pull_request(REPO, {**api_example("pulls-get"), "number": 8})
    check_run = api_example("checks-create.completed")
    check_run.update(
        {
            "id": 41,
            "name": "tests",
            "head_sha": opened["head"]["sha"],
            "conclusion": "failure",
            "output": {"title": "2 failed", "summary": "test_export_csv failed"},
            "details_url": "https://ci.example/runs/41",
        }
    )
    fake_github.check_runs[41] = {**check_run, "_repo": REPO}
    said = api_example("issues-list-comments")[0]
    said.update(
        {"id": 61, "body": "Please add a changelog entry.", "created_at": "2026-12-01T10:00:00Z"}
    )
    fake_github.issue_comments[61] = {**said, "_repo": REPO, "_number": 7}
    review = api_example("pulls-list-review-comments")[0]
    review.update(
        {
            "id": 62,
            "body": "Quote fields that hold a separator.",
            "path": "export/csv.py",
            "line": 12,
            "in_reply_to_id": None,
            "created_at": "2026-12-01T11:00:00Z",
        }
    )
    fake_github.add_review_comment(REPO, 7, review)
    return opened


async def test_pull_request_reads_the_pipeline_pull_request(
    db: Database, github: GitHubApp, pull: dict[str, Any], tmp_path: Path
) -> None:
    tool = await github_cli(db, github)
    read = await call(tool, tmp_path, action="pull_request")  # its only PR: no number needed
    assert not read.is_error
    lines = read.content.splitlines()
    assert lines[0] == "#7 ACME-1: export invoices as CSV"
    assert lines[1].startswith("state: open | draft: no | merged: no")
    assert f"head: new-topic at {pull['head']['sha']} -> base: master" in lines
    assert "description:\nPlease pull these awesome changes in!" in read.content


async def test_checks_list_the_check_runs_on_the_head_commit(
    db: Database, github: GitHubApp, pull: dict[str, Any], tmp_path: Path
) -> None:
    tool = await github_cli(db, github)
    read = await call(tool, tmp_path, action="checks", number=7)
    assert read.content.splitlines() == [
        f"#7: 1 check run(s) on its head {pull['head']['sha']}",
        "tests: completed, failure",
        "  2 failed - test_export_csv failed",
        "  https://ci.example/runs/41",
    ]


async def test_comments_list_issue_and_review_comments_oldest_first(
    db: Database, github: GitHubApp, pull: dict[str, Any], tmp_path: Path
) -> None:
    tool = await github_cli(db, github)
    read = await call(tool, tmp_path, action="comments", number=7)
    blocks = read.content.split("\n\n")
    assert blocks[0] == "#7: 1 issue comment(s) and 1 review comment(s), oldest first"
    assert blocks[1] == (
        "issue comment 61 by octocat at 2026-12-01T10:00:00Z:\nPlease add a changelog entry."
    )
    assert blocks[2] == (
        "review comment 62 by octocat on export/csv.py:12 at 2026-12-01T11:00:00Z:\n"
        "Quote fields that hold a separator."
    )


async def test_github_cli_only_reads(
    db: Database,
    github: GitHubApp,
    fake_github: FakeGitHub,
    pull: dict[str, Any],
    tmp_path: Path,
) -> None:
    tool = await github_cli(db, github)
    for action in ("pull_request", "checks", "comments"):
        assert not (await call(tool, tmp_path, action=action)).is_error
    to_repo = [(c.method, c.path) for c in fake_github.calls if c.path.startswith("/repos/")]
    assert {method for method, _ in to_repo} == {"GET"}
    assert f"/repos/{REPO}/issues/7/comments" in {path for _, path in to_repo}
    problem = tool.validation_error({"action": "merge", "number": 7})
    assert problem is not None and "'merge' is not one of" in problem


async def test_a_pull_request_the_pipeline_did_not_open_is_refused(
    db: Database,
    github: GitHubApp,
    fake_github: FakeGitHub,
    pull: dict[str, Any],
    tmp_path: Path,
) -> None:
    tool = await github_cli(db, github)
    refused = await call(tool, tmp_path, action="pull_request", number=8)
    assert refused.is_error
    assert refused.content == (
        f"#8 is not a pull request of this pipeline; its pull requests in {REPO}: #7"
    )
    assert fake_github.calls_to("GET", f"/repos/{REPO}/pulls/8") == []


async def test_another_repository_is_refused(
    db: Database,
    github: GitHubApp,
    fake_github: FakeGitHub,
    pull: dict[str, Any],
    tmp_path: Path,
) -> None:
    tool = await github_cli(db, github)
    refused = await call(tool, tmp_path, action="comments", number=7, repository="octo/other")
    same = await call(tool, tmp_path, action="pull_request", repository="Octo/Repo")
    assert refused.is_error
    assert (
        refused.content
        == "github_cli reads only this pipeline's repository octo/repo, not octo/other"
    )
    assert fake_github.calls_to("GET", "/repos/octo/other") == []
    assert same.content.startswith("#7 ACME-1")  # GitHub's names ignore case


async def test_a_pipeline_without_a_pull_request_yet_says_so(
    db: Database, github: GitHubApp, tmp_path: Path
) -> None:
    tool = await github_cli(db, github, opened=False)
    refused = await call(tool, tmp_path, action="checks")
    assert refused.is_error
    assert refused.content == f"this pipeline has opened no pull request in {REPO} yet"


async def test_without_the_github_app_a_read_is_a_tool_error(db: Database, tmp_path: Path) -> None:
    tool = await github_cli(db, None)
    refused = await call(tool, tmp_path, action="pull_request")
    assert refused.is_error
    assert refused.content == "the GitHub App is not configured for biagent: GitHub cannot be read"


async def test_a_github_refusal_comes_back_as_a_tool_error(
    db: Database, github: GitHubApp, tmp_path: Path
) -> None:
    # Recorded for the pipeline, but GitHub no longer has it (the fake has no #7 here).
    tool = await github_cli(db, github)
    answered = await call(tool, tmp_path, action="pull_request")
    assert answered.is_error
    assert answered.content == "GitHub answered 404: Not Found"


# -- both ----------------------------------------------------------------------------------------


async def test_the_registry_takes_both_tools_and_their_schemas(db: Database) -> None:
    registry = ToolRegistry(tools_of(db, await a_pipeline(db)).values())
    assert registry.get(JIRA_TOOL).source == registry.get(GITHUB_TOOL).source == "pipeline"
    assert "ACME-1" in registry.get(JIRA_TOOL).description
    assert REPO in registry.get(GITHUB_TOOL).description


def test_a_list_too_long_for_the_cap_keeps_its_newest_entries() -> None:
    blocks = [f"comment {n}: " + "x" * 1000 for n in range(60)]
    shown = newest_within("60 comments", blocks)
    assert len(shown) <= MAX_OUTPUT_CHARS
    assert shown.startswith("60 comments\n\n[41 earlier left out: only the newest fit]\n\n")
    assert shown.endswith(blocks[-1]) and "comment 41: " in shown and "comment 40: " not in shown
