"""The agent tools of a ticket pipeline: `jira_cli` and `github_cli`, each scoped to one pipeline.

Where it sits (docs/pipelines.md): the pipeline driver (bot/pipelines/driver.py) builds them for
each step with `pipeline_tools(...)` and hands them to the agent runtime as
`AgentContext.extra_tools` (bot/agents/step.py); the loop checks each call against the tool's
schema and records it like any other tool call (bot/agents/tool_use.py).

- `jira_cli` reads the local JIRA mirror (storage/tickets.py): the pipeline's ticket, its
  comments and links, and the tickets linked to it. It comments on the pipeline's ticket, and
  on no other, through bot/jira/client.py when JIRA is configured.
- `github_cli` reads the pull requests the pipeline opened in its repository
  (storage/pipelines.py `pull_requests_of`): the pull request, the check runs on its head, its
  issue and review comments, through the installation's gidgethub client. It has read actions
  only: no merge, no push, no comment.

A call outside the pipeline's scope (another ticket, another repository, a pull request the
pipeline did not open), or one the configuration cannot serve, is answered as a tool error
(`ToolResult(is_error=True)`) that says why. Answers are plain text capped at MAX_OUTPUT_CHARS;
a list that does not fit keeps its newest entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.agents.tool_registry import Tool, ToolContext, ToolResult
from bot.github.app import GitHubApp
from bot.jira.client import JiraClient, JiraError
from storage import pipelines, tickets
from storage.database import Database
from storage.tickets import Ticket, TicketLink

JIRA_TOOL = "jira_cli"
GITHUB_TOOL = "github_cli"
PIPELINE_TOOL_NAMES: tuple[str, ...] = (JIRA_TOOL, GITHUB_TOOL)

MAX_OUTPUT_CHARS = 20_000
MAX_LISTED = 500  # entries read from one GitHub list (five pages)
MAX_COMMENT_CHARS = 30_000  # Jira refuses a comment longer than 32767 characters
CHECK_SUMMARY_CHARS = 500
SOURCE = "pipeline"


class Refused(Exception):
    """The call is outside the pipeline's scope, or cannot be served; the text says why."""


def pipeline_tools(
    *,
    db: Database,
    pipeline_id: int,
    ticket_key: str,
    repository_full_name: str,
    installation_id: int | None,
    jira: JiraClient | None,
    github: GitHubApp | None,
) -> tuple[Tool, ...]:
    """jira_cli and github_cli for one step of pipeline `pipeline_id`, for `extra_tools`."""
    jira_cli = JiraCli(db=db, ticket_key=ticket_key, jira=jira)
    github_cli = GitHubCli(
        db=db,
        pipeline_id=pipeline_id,
        repository=repository_full_name,
        installation_id=installation_id,
        github=github,
    )
    return (jira_cli.tool(), github_cli.tool())


# -- jira_cli --------------------------------------------------------------------------------


def _same_key(first: str, second: str) -> bool:
    return first.strip().upper() == second.strip().upper()


@dataclass(frozen=True, slots=True)
class JiraCli:
    db: Database
    ticket_key: str
    jira: JiraClient | None

    def tool(self) -> Tool:
        key = self.ticket_key
        description = (
            f"Read JIRA ticket {key} from biagent's local mirror of JIRA, and comment on it. "
            "Actions: ticket (its fields and description), comments (oldest first), links "
            f"(the tickets linked to it), comment (post `body` as a comment on {key}). With "
            f"`key`, read a ticket linked to {key} instead; no other ticket can be read, and "
            f"comments go to {key} only."
        )
        schema = {
            "type": "object",
            "properties": {
                "action": {"enum": ["ticket", "comments", "links", "comment"]},
                "key": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"A ticket key; {key} when left out.",
                },
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_COMMENT_CHARS,
                    "description": "The comment's text (action comment).",
                },
            },
            "required": ["action"],
            "additionalProperties": False,
        }
        return Tool(JIRA_TOOL, description, schema, self.handle, source=SOURCE)

    async def handle(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        action = arguments["action"]
        try:
            if action == "comment":
                return ToolResult(await self.comment(arguments.get("key"), arguments.get("body")))
            ticket = await self.readable(arguments.get("key"))
        except Refused as refused:
            return ToolResult(str(refused), is_error=True)
        if action == "ticket":
            return ToolResult(ticket_text(ticket))
        if action == "comments":
            return ToolResult(jira_comments_text(ticket))
        return ToolResult(links_text(ticket.key, await tickets.links_of(self.db, ticket.id)))

    async def readable(self, key: str | None) -> Ticket:
        """The pipeline's ticket, or a mirrored ticket linked to it."""
        own = await tickets.get_ticket(self.db, self.ticket_key)
        if key is None or _same_key(key, self.ticket_key):
            if own is None:
                raise Refused(
                    f"{self.ticket_key} is not in the local JIRA mirror yet (not synced, or "
                    "in a project biagent does not sync)"
                )
            return own
        links = [] if own is None else await tickets.links_of(self.db, own.id)
        link = next((link for link in links if _same_key(link.other_key, key)), None)
        if link is None:
            raise Refused(
                f"{key} is not linked to this pipeline's ticket {self.ticket_key}: jira_cli "
                f"reads only {self.ticket_key} and the tickets linked to it"
            )
        linked = await tickets.get_ticket(self.db, link.other_key)
        if linked is None:
            raise Refused(
                f"{link_line(self.ticket_key, link)}; {link.other_key} itself is not in the "
                "local JIRA mirror (a project biagent does not sync)"
            )
        return linked

    async def comment(self, key: str | None, body: str | None) -> str:
        if key is not None and not _same_key(key, self.ticket_key):
            raise Refused(
                f"jira_cli comments only on this pipeline's ticket {self.ticket_key}, not {key}"
            )
        if not body or not body.strip():
            raise Refused("the comment action needs a non-empty body")
        if self.jira is None:
            raise Refused("JIRA is not configured for biagent: no comment can be posted")
        try:
            posted = await self.jira.add_comment(self.ticket_key, body)
        except JiraError as error:
            raise Refused(f"JIRA refused the comment on {self.ticket_key}: {error}") from error
        return (
            f"comment {posted.get('id', '?')} added to {self.ticket_key} (the local mirror "
            "shows it after its next sync)"
        )


def _capped(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[:MAX_OUTPUT_CHARS] + f"\n[cut at {MAX_OUTPUT_CHARS} characters]"


def _facts(named: dict[str, Any]) -> str:
    """`name: value | ...` for the values that are known."""
    return " | ".join(
        f"{name}: {value}" for name, value in named.items() if value not in (None, "")
    )


def newest_within(header: str, blocks: Sequence[str]) -> str:
    """`header`, then as many of the newest `blocks` (given oldest first) as fit the cap."""
    kept: list[str] = []
    size = len(header)
    for block in reversed(blocks):
        if kept and size + len(block) + 2 > MAX_OUTPUT_CHARS:
            break
        kept.append(block)
        size += len(block) + 2
    kept.reverse()
    left_out = len(blocks) - len(kept)
    note = [f"[{left_out} earlier left out: only the newest fit]"] if left_out else []
    return _capped("\n\n".join([header, *note, *kept]))


def ticket_text(ticket: Ticket) -> str:
    people = {"assignee": ticket.assignee, "reporter": ticket.reporter}
    lines = [
        f"{ticket.key}: {ticket.summary}",
        _facts(
            {
                "status": ticket.status,
                "type": ticket.issue_type,
                "priority": ticket.priority,
                "resolution": ticket.resolution,
            }
        ),
        _facts(people),
    ]
    listed = {
        "labels": ticket.labels,
        "components": ticket.components,
        "subtasks": ticket.subtask_keys,
    }
    lines.extend(f"{name}: {', '.join(values)}" for name, values in listed.items() if values)
    if ticket.parent_key:
        lines.append(f"parent: {ticket.parent_key}")
    lines.append(f"updated: {ticket.updated_at} | comments: {len(ticket.comments)}")
    lines.append("description:\n" + (ticket.description or "(none)").strip())
    return _capped("\n".join(line for line in lines if line))


def jira_comments_text(ticket: Ticket) -> str:
    if not ticket.comments:
        return f"{ticket.key} has no comments"
    blocks = [
        f"[{comment.get('id')}] {comment.get('author') or 'someone'} at "
        f"{comment.get('created') or '?'}:\n{str(comment.get('body') or '').strip()}"
        for comment in ticket.comments
    ]
    return newest_within(f"{ticket.key}: {len(blocks)} comment(s), oldest first", blocks)


def link_line(key: str, link: TicketLink) -> str:
    summary = f": {link.other_summary}" if link.other_summary else ""
    status = f" [{link.other_status}]" if link.other_status else ""
    return f"{key} {link.relation} {link.other_key}{summary}{status}"


def links_text(key: str, links: Sequence[TicketLink]) -> str:
    if not links:
        return f"{key} has no links"
    return _capped("\n".join(link_line(key, link) for link in links))


# -- github_cli ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubCli:
    db: Database
    pipeline_id: int
    repository: str  # owner/name
    installation_id: int | None
    github: GitHubApp | None

    def tool(self) -> Tool:
        description = (
            f"Read this pipeline's pull requests in {self.repository} on GitHub. Read-only: "
            "nothing can be merged, pushed or commented through it. Actions: pull_request "
            "(state, branches, description), checks (the check runs on its head commit), "
            "comments (its issue and review comments, oldest first). `number` may be left out "
            "when the pipeline has opened one pull request there."
        )
        schema = {
            "type": "object",
            "properties": {
                "action": {"enum": ["pull_request", "checks", "comments"]},
                "number": {"type": "integer", "minimum": 1},
                "repository": {
                    "type": "string",
                    "description": f"owner/name: only {self.repository}.",
                },
            },
            "required": ["action"],
            "additionalProperties": False,
        }
        return Tool(GITHUB_TOOL, description, schema, self.handle, source=SOURCE)

    async def handle(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        read = {
            "pull_request": self.pull_request,
            "checks": self.checks,
            "comments": self.comments,
        }[arguments["action"]]
        try:
            number = await self.scoped(arguments.get("repository"), arguments.get("number"))
            return ToolResult(await read(self.client(), number))
        except Refused as refused:
            return ToolResult(str(refused), is_error=True)
        except gidgethub.HTTPException as error:
            status = int(error.status_code)
            return ToolResult(f"GitHub answered {status}: {error}", is_error=True)

    async def scoped(self, repository: str | None, number: int | None) -> int:
        """The pull request asked for, when the pipeline opened it in its repository."""
        if repository is not None and repository.strip().casefold() != self.repository.casefold():
            raise Refused(
                f"github_cli reads only this pipeline's repository {self.repository}, "
                f"not {repository}"
            )
        opened = await pipelines.pull_requests_of(self.db, self.pipeline_id)
        recorded = [
            p.number for p in opened if p.repository.casefold() == self.repository.casefold()
        ]
        if not recorded:
            raise Refused(f"this pipeline has opened no pull request in {self.repository} yet")
        listed = ", ".join(f"#{found}" for found in recorded)
        if number is None:
            if len(recorded) == 1:
                return recorded[0]
            raise Refused(f"give `number`: this pipeline's pull requests here are {listed}")
        if number not in recorded:
            raise Refused(
                f"#{number} is not a pull request of this pipeline; its pull requests in "
                f"{self.repository}: {listed}"
            )
        return number

    def client(self) -> GitHubAPI:
        if self.github is None:
            raise Refused("the GitHub App is not configured for biagent: GitHub cannot be read")
        if self.installation_id is None:
            raise Refused(f"the GitHub App is not installed on {self.repository}")
        return self.github.client(self.installation_id)

    async def pull_request(self, gh: GitHubAPI, number: int) -> str:
        return pull_request_text(await gh.getitem(f"/repos/{self.repository}/pulls/{number}"))

    async def checks(self, gh: GitHubAPI, number: int) -> str:
        pull = await gh.getitem(f"/repos/{self.repository}/pulls/{number}")
        head_sha = str(pull["head"]["sha"])
        url = f"/repos/{self.repository}/commits/{head_sha}/check-runs{{?per_page}}"
        runs = await _listed(gh.getiter(url, {"per_page": 100}, iterable_key="check_runs"))
        return checks_text(number, head_sha, runs)

    async def comments(self, gh: GitHubAPI, number: int) -> str:
        base, page = f"/repos/{self.repository}", {"per_page": 100}
        issue = await _listed(gh.getiter(f"{base}/issues/{number}/comments{{?per_page}}", page))
        review = await _listed(gh.getiter(f"{base}/pulls/{number}/comments{{?per_page}}", page))
        return github_comments_text(number, issue, review)


async def _listed(entries: AsyncIterator[Any]) -> list[dict[str, Any]]:
    """The first MAX_LISTED entries of a GitHub list, read page by page."""
    found: list[dict[str, Any]] = []
    async for entry in entries:
        if isinstance(entry, dict):
            found.append(entry)
        if len(found) >= MAX_LISTED:
            break
    return found


def _count(entries: Sequence[Any]) -> str:
    """How many entries, with `+` when the list was cut at MAX_LISTED."""
    return f"{len(entries)}+" if len(entries) >= MAX_LISTED else str(len(entries))


def _yes_no(value: Any) -> str | None:
    return None if value is None else ("yes" if value else "no")


def _login(item: dict[str, Any]) -> str:
    return str((item.get("user") or {}).get("login") or "someone")


def pull_request_text(pull: dict[str, Any]) -> str:
    head, base = pull.get("head") or {}, pull.get("base") or {}
    lines = [
        f"#{pull.get('number')} {pull.get('title')}",
        _facts(
            {
                "state": pull.get("state"),
                "draft": _yes_no(pull.get("draft")),
                "merged": _yes_no(pull.get("merged")),
                "mergeable": _yes_no(pull.get("mergeable")),
                "mergeable state": pull.get("mergeable_state"),
            }
        ),
        f"head: {head.get('ref')} at {head.get('sha')} -> base: {base.get('ref')}",
        _facts({"author": _login(pull), "url": pull.get("html_url")}),
        _facts(
            {
                "commits": pull.get("commits"),
                "changed files": pull.get("changed_files"),
                "additions": pull.get("additions"),
                "deletions": pull.get("deletions"),
                "comments": pull.get("comments"),
                "review comments": pull.get("review_comments"),
            }
        ),
        "description:\n" + str(pull.get("body") or "(none)").strip(),
    ]
    return _capped("\n".join(line for line in lines if line))


def checks_text(number: int, head_sha: str, runs: Sequence[dict[str, Any]]) -> str:
    if not runs:
        return f"#{number}: no check runs on its head {head_sha}"
    blocks = []
    for run in runs:
        verdict = ", ".join(
            str(part) for part in (run.get("status"), run.get("conclusion")) if part
        )
        lines = [f"{run.get('name')}: {verdict}"]
        output = run.get("output") or {}
        said = " - ".join(
            str(part).strip() for part in (output.get("title"), output.get("summary")) if part
        )
        if said:
            lines.append("  " + said[:CHECK_SUMMARY_CHARS])
        link = run.get("details_url") or run.get("html_url")
        if link:
            lines.append(f"  {link}")
        blocks.append("\n".join(lines))
    header = f"#{number}: {_count(runs)} check run(s) on its head {head_sha}"
    return _capped("\n".join([header, *blocks]))


def _issue_comment(comment: dict[str, Any]) -> str:
    return (
        f"issue comment {comment.get('id')} by {_login(comment)} at "
        f"{comment.get('created_at')}:\n{str(comment.get('body') or '').strip()}"
    )


def _review_comment(comment: dict[str, Any]) -> str:
    line = comment.get("line") or comment.get("original_line")
    where = f"{comment.get('path')}:{line}" if line else str(comment.get("path"))
    reply = comment.get("in_reply_to_id")
    answering = f" (reply to {reply})" if reply else ""
    return (
        f"review comment {comment.get('id')} by {_login(comment)} on {where} at "
        f"{comment.get('created_at')}{answering}:\n{str(comment.get('body') or '').strip()}"
    )


def github_comments_text(
    number: int, issue: Sequence[dict[str, Any]], review: Sequence[dict[str, Any]]
) -> str:
    if not issue and not review:
        return f"#{number} has no comments"
    dated = [(c, _issue_comment(c)) for c in issue] + [(c, _review_comment(c)) for c in review]
    dated.sort(key=lambda pair: (str(pair[0].get("created_at") or ""), int(pair[0].get("id") or 0)))
    header = (
        f"#{number}: {_count(issue)} issue comment(s) and {_count(review)} review comment(s), "
        "oldest first"
    )
    return newest_within(header, [text for _, text in dated])
