"""`biagent-jira`, the installed console script, run against the JIRA protocol fake."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.jira import FakeJira

SCRIPT = Path(sys.executable).parent / "biagent-jira"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, env: dict[str, str]) -> Outcome:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Outcome(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
def env(fake_jira: FakeJira, tmp_path: Path) -> dict[str, str]:
    return {
        "JIRA_URL": fake_jira.url,
        "JIRA_EMAIL": fake_jira.email,
        "JIRA_API_TOKEN": fake_jira.token,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }


async def test_list_prints_a_table(fake_jira: FakeJira, env: dict[str, str]) -> None:
    fake_jira.add_issue("PROJ", "Checkout page crashes", status="In Progress", assignee="Ann Lee")
    fake_jira.add_issue("PROJ", "Update docs")
    fake_jira.add_issue("OPS", "Rotate keys")
    result = await run_cli("list", "--project", "PROJ", env=env)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "STATUS", "TYPE", "ASSIGNEE", "UPDATED", "SUMMARY"]
    assert lines[1].startswith("PROJ-2") and lines[1].endswith("Update docs")
    assert "In Progress" in lines[2] and "Ann Lee" in lines[2]
    assert len(lines) == 3


async def test_list_json_with_filters(fake_jira: FakeJira, env: dict[str, str]) -> None:
    fake_jira.add_issue("PROJ", "Checkout page crashes", status="In Progress")
    fake_jira.add_issue("PROJ", "Update docs")
    result = await run_cli("list", "-p", "PROJ", "--status", "In Progress", "--json", env=env)
    assert result.code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [(t["key"], t["status"]) for t in listed] == [("PROJ-1", "In Progress")]


async def test_list_with_bad_jql_exits_4(env: dict[str, str]) -> None:
    result = await run_cli("list", "--jql", "nosuchfield = 3", env=env)
    assert result.code == 4
    assert "Field 'nosuchfield' does not exist" in result.stderr


async def test_get_shows_one_ticket(fake_jira: FakeJira, env: dict[str, str]) -> None:
    key = fake_jira.add_issue(
        "PROJ", "Order flow broken", description="Total is wrong", labels=("bug",)
    )
    fake_jira.add_attachment(key, "debuglog.txt", content=b"log")
    result = await run_cli("get", key, env=env)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{key}  Order flow broken"
    assert "  status:      To Do" in result.stdout
    assert "  labels:      bug" in result.stdout
    assert "  attachments: debuglog.txt" in result.stdout
    assert result.stdout.rstrip().endswith("Total is wrong")
    as_json = json.loads((await run_cli("get", key, "--json", env=env)).stdout)
    assert (as_json["key"], as_json["attachments"][0]["filename"]) == (key, "debuglog.txt")


async def test_get_an_unknown_key_exits_3(env: dict[str, str]) -> None:
    result = await run_cli("get", "PROJ-404", env=env)
    assert result.code == 3
    assert "not found" in result.stderr


async def test_related_lists_links_both_ways_and_subtasks(
    fake_jira: FakeJira, env: dict[str, str]
) -> None:
    epic = fake_jira.add_issue("PROJ", "The epic")
    blocked = fake_jira.add_issue("PROJ", "Blocked one")
    child = fake_jira.add_issue("PROJ", "A sub-task", parent=epic)
    fake_jira.link(epic, blocked, "Blocks")
    result = await run_cli("related", epic, env=env)
    assert result.code == 0, result.stderr
    rows = [line.split(None, 2) for line in result.stdout.splitlines()[1:]]
    assert [(row[0], row[1]) for row in rows] == [("blocks", blocked), ("parent", "of")]
    assert child in result.stdout
    back = await run_cli("related", blocked, "--json", env=env)
    assert json.loads(back.stdout)["related"][0] == {
        "relation": "is blocked by",
        "key": epic,
        "status": "To Do",
        "summary": "The epic",
    }


async def test_update_fields_transition_and_comment(
    fake_jira: FakeJira, env: dict[str, str]
) -> None:
    key = fake_jira.add_issue("PROJ", "Old title")
    result = await run_cli(
        "update",
        key,
        "--summary",
        "New title",
        "--field",
        'labels=["backend"]',
        "--transition",
        "start work",
        "--comment",
        "Picked up by biagent",
        env=env,
    )
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{key}: updated labels, summary",
        f"{key}: moved to In Progress (Start work)",
        f"{key}: commented (comment {fake_jira.issue(key).comments[0]['id']})",
    ]
    issue = fake_jira.issue(key)
    assert issue.fields["summary"] == "New title"
    assert issue.fields["labels"] == ["backend"]
    assert issue.fields["status"]["name"] == "In Progress"
    assert issue.comments[0]["body"] == "Picked up by biagent"


async def test_update_with_an_unknown_transition_exits_4(
    fake_jira: FakeJira, env: dict[str, str]
) -> None:
    key = fake_jira.add_issue("PROJ", "A ticket")
    result = await run_cli("update", key, "--transition", "Teleport", env=env)
    assert result.code == 4
    assert "no transition 'Teleport'; available: Start work (11), Finish (21)" in result.stderr


async def test_sync_fills_the_database_with_a_progress_bar(
    fake_jira: FakeJira, env: dict[str, str], tmp_path: Path
) -> None:
    for n in range(3):
        fake_jira.add_issue("PROJ", f"ticket {n}")
    result = await run_cli("sync", "--project", "PROJ", env=env)
    assert result.code == 0, result.stderr
    assert "Syncing PROJ" in result.stderr
    assert result.stdout.startswith("PROJ: full sync, 3 seen, 3 created, 0 updated, 0 deleted,")
    again = await run_cli("sync", "--project", "PROJ", "--json", env=env)
    assert json.loads(again.stdout)[0]["kind"] == "incremental"
    import sqlite3

    with sqlite3.connect(tmp_path / "cli.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 3


async def test_bad_credentials_exit_5(env: dict[str, str]) -> None:
    result = await run_cli("list", "-p", "PROJ", env={**env, "JIRA_API_TOKEN": "wrong"})
    assert result.code == 5
    assert "refused the credentials" in result.stderr and "JIRA_API_TOKEN" in result.stderr


async def test_an_unreachable_server_exits_6(env: dict[str, str]) -> None:
    result = await run_cli("get", "PROJ-1", env={**env, "JIRA_URL": "http://127.0.0.1:9"})
    assert result.code == 6
    assert "cannot reach Jira" in result.stderr and "http://127.0.0.1:9" in result.stderr


async def test_missing_configuration_exits_2() -> None:
    result = await run_cli("list", env={})
    assert result.code == 2
    assert "set JIRA_URL and JIRA_API_TOKEN" in result.stderr


async def test_sync_of_a_malformed_project_key_exits_2(env: dict[str, str]) -> None:
    result = await run_cli("sync", "-p", "bad-key", env=env)
    assert result.code == 2
    assert "'bad-key' is not a Jira project key" in result.stderr
    assert "Traceback" not in result.stderr
