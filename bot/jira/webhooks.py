"""JIRA webhooks: issue and comment events bring the mirror up to date at once.

A webhook is a trigger, not the truth: the handler fetches the issue again (within the sync
scope) rather than trusting the payload, so a late or repeated delivery (Jira retries, up to
about 30 minutes late) stores the current state, never an old one, and the periodic sync stays
the reconciliation that repairs anything missed. `jira:issue_deleted` deletes without a fetch.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext

log = logging.getLogger(__name__)

router = routing.Router()

_ISSUE_IN_URL = re.compile(r"/issue/(\d+)(?:/|$)")


def issue_id_of(payload: dict[str, Any]) -> str | None:
    """The issue id of an issue or comment event (Server's comment events carry no issue)."""
    issue = payload.get("issue")
    if isinstance(issue, dict) and str(issue.get("id", "")).isdigit():
        return str(issue["id"])
    comment = payload.get("comment")
    if isinstance(comment, dict):
        match = _ISSUE_IN_URL.search(str(comment.get("self", "")))
        if match:
            return match.group(1)
    return None


async def _refresh(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
    jira = context.services.jira
    issue_id = issue_id_of(event.data)
    if jira is None or issue_id is None:
        log.info(
            "JIRA webhook %s (%s): %s",
            event.delivery_id,
            event.event,
            "JIRA is off" if jira is None else "no issue id in the payload",
        )
        return
    key = await jira.sync.refresh_issue(issue_id)
    log.info("JIRA webhook %s (%s): issue %s -> %s", event.delivery_id, event.event, issue_id, key)


for _event_name in (
    "jira:issue_created",
    "jira:issue_updated",
    "comment_created",
    "comment_updated",
    "comment_deleted",
):
    router.add(_refresh, _event_name)


@router.register("jira:issue_deleted")
async def issue_deleted(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
    jira = context.services.jira
    issue_id = issue_id_of(event.data)
    if jira is None or issue_id is None:
        return
    key = await jira.sync.forget_issue(issue_id)
    log.info("JIRA webhook %s: issue %s (%s) deleted", event.delivery_id, issue_id, key)


@router.register("issuelink_created")
@router.register("issuelink_deleted")
async def issue_link_changed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    jira = context.services.jira
    link = event.data.get("issueLink")
    if jira is None or not isinstance(link, dict):
        return
    # Links are stored from both ends: refreshing either end rewrites both rows.
    for end in ("sourceIssueId", "destinationIssueId"):
        issue_id = str(link.get(end, ""))
        if issue_id.isdigit():
            await jira.sync.refresh_issue(issue_id)
