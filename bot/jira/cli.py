"""`biagent-jira`: read and update JIRA tickets, and sync the mirror, from the command line.

The same configuration as the server (JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN, JIRA_JQL and, for
`sync`, DATABASE_URL), read from the environment. `list`, `get`, `related` and `update` talk to
Jira directly; `sync` fills the server's database exactly as the scheduled sync does (the
per-project lease keeps it from running beside the server's own sync of the same project).

Exit codes: 0 done; 1 another Jira error; 2 bad usage or configuration; 3 unknown issue key;
4 request refused as malformed (bad JQL, unknown field or transition); 5 bad credentials or
no permission; 6 Jira unreachable; 7 a sync of that project is already running.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from bot.clock import SystemClock
from bot.config import ConfigError, Settings, load_settings
from bot.jira.client import (
    JiraAuthError,
    JiraBadRequest,
    JiraClient,
    JiraError,
    JiraNotFound,
    JiraUnavailable,
)
from bot.jira.issues import SYNC_FIELDS, ticket_from_issue
from bot.jira.service import client_from_settings
from bot.jira.sync import JiraSync, SyncAlreadyRunning, SyncResult, is_project_key
from storage.tickets import TicketRecord

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BAD_REQUEST = 4
EXIT_AUTH = 5
EXIT_UNREACHABLE = 6
EXIT_BUSY = 7

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[0-9]+$")

app = typer.Typer(
    name="biagent-jira",
    help="Read and update JIRA tickets and sync biagent's mirror of them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"biagent-jira: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        _fail("invalid configuration:\n  " + "\n  ".join(error.problems), EXIT_USAGE)
    if not settings.jira_enabled or settings.jira_api_token is None:
        _fail("JIRA is not configured: set JIRA_URL and JIRA_API_TOKEN", EXIT_USAGE)
    return settings


def _run(settings: Settings, work: Callable[[JiraClient], Awaitable[T]]) -> T:
    """Run `work` with a client; Jira's failures become a message and an exit code."""

    async def main() -> T:
        client = client_from_settings(settings, SystemClock())
        try:
            return await work(client)
        finally:
            client.close()

    try:
        return asyncio.run(main())
    except JiraNotFound as error:
        _fail(str(error), EXIT_NOT_FOUND)
    except JiraBadRequest as error:
        _fail(str(error), EXIT_BAD_REQUEST)
    except JiraAuthError as error:
        _fail(f"{error} (check JIRA_EMAIL and JIRA_API_TOKEN)", EXIT_AUTH)
    except JiraUnavailable as error:
        _fail(f"{error} at {settings.jira_url}", EXIT_UNREACHABLE)
    except SyncAlreadyRunning as error:
        _fail(str(error), EXIT_BUSY)
    except JiraError as error:
        _fail(str(error), EXIT_ERROR)


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        _fail(f"{key!r} is not an issue key like PROJ-123", EXIT_USAGE)
    return key.upper()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _table(headers: list[str], rows: list[list[str]], *, last_width: int = 60) -> None:
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    for row in cells:
        line = "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False))
        last = row[-1] if len(row[-1]) <= last_width else row[-1][: last_width - 1] + "…"
        typer.echo(f"{line}  {last}".rstrip())


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- list --------------------------------------------------------------------------------------


@app.command("list")
def list_tickets(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project key.")] = None,
    status: Annotated[str | None, typer.Option("--status", "-s", help="Status name.")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", "-a")] = None,
    issue_type: Annotated[str | None, typer.Option("--type", "-t", help="Issue type.")] = None,
    label: Annotated[str | None, typer.Option("--label", "-l")] = None,
    text: Annotated[str | None, typer.Option("--text", "-q", help="Words in the text.")] = None,
    jql: Annotated[str | None, typer.Option("--jql", help="More JQL, ANDed in.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """List tickets from Jira, newest change first."""
    settings = _settings()
    equals = {
        "project": project,
        "status": status,
        "assignee": assignee,
        "issuetype": issue_type,
        "labels": label,
    }
    query = list_query(equals, text=text, jql=jql, default_jql=settings.jira_jql)
    if query is None:
        _fail("give a filter (--project, --jql, ...) or set JIRA_JQL", EXIT_USAGE)

    async def work(client: JiraClient) -> list[dict[str, Any]]:
        page = await client.search_page(query, fields=SYNC_FIELDS, max_results=limit)
        return page.issues

    records = [ticket_from_issue(issue) for issue in _run(settings, work)]
    if as_json:
        _print_json([_listed_json(r) for r in records])
    elif not records:
        typer.echo("no tickets match")
    else:
        _table(
            ["KEY", "STATUS", "TYPE", "ASSIGNEE", "UPDATED", "SUMMARY"],
            [
                [
                    r.key,
                    r.status or "",
                    r.issue_type or "",
                    r.assignee or "-",
                    r.updated_at[:16].replace("T", " "),
                    r.summary,
                ]
                for r in records
            ],
        )


def list_query(
    equals: dict[str, str | None], *, text: str | None, jql: str | None, default_jql: str | None
) -> str | None:
    """The JQL `list` searches: the filters given ANDed, else JIRA_JQL; None when neither."""
    clauses = [f"{name} = {_quote(value)}" for name, value in equals.items() if value]
    if text:
        clauses.append(f"text ~ {_quote(text)}")
    if jql:
        clauses.append(f"({jql})")
    if not clauses and default_jql:
        clauses.append(f"({default_jql})")
    if not clauses:
        return None
    return " AND ".join(clauses) + " ORDER BY updated DESC"


def _listed_json(record: TicketRecord) -> dict[str, Any]:
    return {
        "key": record.key,
        "summary": record.summary,
        "status": record.status,
        "type": record.issue_type,
        "priority": record.priority,
        "assignee": record.assignee,
        "labels": list(record.labels),
        "updated_at": record.updated_at,
    }


# -- get / related -----------------------------------------------------------------------------


def _fetch(settings: Settings, key: str) -> dict[str, Any]:
    async def work(client: JiraClient) -> dict[str, Any]:
        return await client.issue(key, fields=SYNC_FIELDS)

    return _run(settings, work)


@app.command("get")
def get_ticket(
    key: Annotated[str, typer.Argument(help="The issue key, PROJ-123.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one ticket."""
    settings = _settings()
    record = ticket_from_issue(_fetch(settings, _check_key(key)))
    if as_json:
        _print_json(
            {
                "key": record.key,
                "summary": record.summary,
                "status": record.status,
                "type": record.issue_type,
                "priority": record.priority,
                "assignee": record.assignee,
                "reporter": record.reporter,
                "labels": list(record.labels),
                "parent": record.parent_key,
                "subtasks": list(record.subtask_keys),
                "description": record.description,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "links": [end.link.as_json() for end in record.links],
                "attachments": [a.as_json() for a in record.attachments],
                "comments": list(record.comments),
            }
        )
        return
    typer.echo(f"{record.key}  {record.summary}")
    for label, value in (
        ("status", record.status),
        ("type", record.issue_type),
        ("priority", record.priority),
        ("assignee", record.assignee or "-"),
        ("reporter", record.reporter or "-"),
        ("labels", ", ".join(record.labels) or "-"),
        ("parent", record.parent_key or "-"),
        ("created", record.created_at),
        ("updated", record.updated_at),
        ("links", str(len(record.links))),
        ("attachments", ", ".join(a.filename for a in record.attachments) or "-"),
        ("comments", str(len(record.comments))),
    ):
        typer.echo(f"  {label + ':':<13}{value}")
    if record.description:
        typer.echo("")
        typer.echo(record.description)


@app.command("related")
def related_tickets(
    key: Annotated[str, typer.Argument(help="The issue key, PROJ-123.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a ticket's links (both directions), parent and sub-tasks."""
    settings = _settings()
    record = ticket_from_issue(_fetch(settings, _check_key(key)))
    rows: list[dict[str, Any]] = [
        {
            "relation": end.link.relation,
            "key": end.link.other_key,
            "status": end.link.other_status,
            "summary": end.link.other_summary,
        }
        for end in record.links
    ]
    if record.parent_key:
        rows.append(
            {"relation": "sub-task of", "key": record.parent_key, "status": None, "summary": None}
        )
    rows.extend(
        {"relation": "parent of", "key": sub, "status": None, "summary": None}
        for sub in record.subtask_keys
    )
    if as_json:
        _print_json({"key": record.key, "related": rows})
        return
    if not rows:
        typer.echo(f"{record.key} has no related tickets")
        return
    _table(
        ["RELATION", "KEY", "STATUS", "SUMMARY"],
        [[r["relation"], r["key"], r["status"] or "", r["summary"] or ""] for r in rows],
    )


# -- update ------------------------------------------------------------------------------------


def _field_value(raw: str) -> Any:
    """`--field name=value`: JSON when it parses (lists, objects, numbers), else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@app.command("update")
def update_ticket(
    key: Annotated[str, typer.Argument(help="The issue key, PROJ-123.")],
    summary: Annotated[str | None, typer.Option("--summary")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="Replaces the labels.")
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="name=value (JSON or text).")
    ] = None,
    transition: Annotated[
        str | None, typer.Option("--transition", help="Transition name or id.")
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", "-m")] = None,
) -> None:
    """Change fields, move through a transition, and/or add a comment."""
    settings = _settings()
    key = _check_key(key)
    fields: dict[str, Any] = {}
    if summary is not None:
        fields["summary"] = summary
    if description is not None:
        fields["description"] = description
    if labels:
        fields["labels"] = list(labels)
    for assignment in field or []:
        name, equals, value = assignment.partition("=")
        if not equals or not name.strip():
            _fail(f"--field wants name=value, got {assignment!r}", EXIT_USAGE)
        fields[name.strip()] = _field_value(value)
    if not fields and transition is None and comment is None:
        _fail("nothing to do: give fields, --transition or --comment", EXIT_USAGE)

    async def work(client: JiraClient) -> list[str]:
        done: list[str] = []
        await client.issue(key, fields=["summary"])  # an unknown key fails here, before any change
        if fields:
            await client.update_fields(key, fields)
            done.append(f"{key}: updated {', '.join(sorted(fields))}")
        if transition is not None:
            done.append(await _move(client, key, transition))
        if comment is not None:
            added = await client.add_comment(key, comment)
            done.append(f"{key}: commented (comment {added.get('id')})")
        return done

    for line in _run(settings, work):
        typer.echo(line)


def chosen_transition(available: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The transition named `wanted` by its id or (in any case) its name, if offered."""
    for offered in available:
        if str(offered.get("id")) == wanted:
            return offered
        if str(offered.get("name", "")).lower() == wanted.lower():
            return offered
    return None


async def _move(client: JiraClient, key: str, transition: str) -> str:
    """Move the issue through the transition named (by id or name); what was done."""
    available = await client.transitions(key)
    chosen = chosen_transition(available, transition)
    if chosen is None:
        names = ", ".join(f"{t.get('name')} ({t.get('id')})" for t in available) or "none"
        raise JiraBadRequest(f"{key}: no transition {transition!r}; available: {names}")
    await client.transition(key, str(chosen["id"]))
    target = (chosen.get("to") or {}).get("name") or chosen.get("name")
    return f"{key}: moved to {target} ({chosen.get('name')})"


# -- sync --------------------------------------------------------------------------------------


class _ProgressDisplay:
    """A progress bar per project on stderr; a plain count when Jira gives no total."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int | None) -> None:
        if total is None:
            typer.echo(f"  {self.project}: {done} issues", err=True)
            return
        if self.bar is None:
            self.bar = typer.progressbar(
                length=max(total, 1), label=f"Syncing {self.project}", file=sys.stderr
            )
            self.bar.__enter__()
        step = min(done, total) - self.shown
        if step > 0:
            self.bar.update(step)
            self.shown += step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@app.command("sync")
def sync_tickets(
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="One project (default: all in scope).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="A full sync, not an incremental one.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sync the mirror in DATABASE_URL from Jira, with a progress bar."""
    if project is not None and not is_project_key(project):
        _fail(f"{project!r} is not a Jira project key like PROJ", EXIT_USAGE)
    settings = _settings()

    async def work(client: JiraClient) -> list[SyncResult]:
        from bot.events.bus import EventBus
        from storage.database import Database

        clock = SystemClock()
        db = await Database.open(settings.database_url, **settings.database_options())
        bus = EventBus(db, clock)
        try:
            await db.migrate()
            await bus.start()
            sync = JiraSync(
                db=db, bus=bus, clock=clock, client=client, jql_filter=settings.jira_jql
            )
            projects = [project.upper()] if project else await sync.projects()
            results = []
            for name in projects:
                display = _ProgressDisplay(name)
                try:
                    results.append(
                        await sync.sync_project(name, trigger="cli", full=full, on_progress=display)
                    )
                finally:
                    display.close()
            return results
        finally:
            await bus.stop()
            await db.close()

    results = _run(settings, work)
    if as_json:
        _print_json([result.as_json() for result in results])
        return
    for result in results:
        typer.echo(
            f"{result.project}: {result.kind} sync, {result.seen} seen, {result.created} created,"
            f" {result.updated} updated, {result.deleted} deleted,"
            f" {result.requests} requests, {result.duration_s:.1f}s"
        )
