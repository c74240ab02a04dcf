"""Pull request closed: remove the worktrees of a merged or closed pull request.

The PR's own state decides (bot/worktrees/cleanup.py), so squash merges clean too. A session
held by a running job is left for the scheduled sweep.
"""

from __future__ import annotations

import logging

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.worktrees.cleanup import PullRequestState

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="closed")
async def on_pull_request_closed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    manager = context.services.worktrees
    if manager is None:
        return
    pull_request = event.data["pull_request"]
    full_name = event.data["repository"]["full_name"]
    number = int(pull_request["number"])
    state = PullRequestState.from_github(pull_request)
    cleaned = await manager.cleanup_for_pull_request(full_name, number, state)
    if cleaned:
        log.info(
            "delivery %s: %s#%d %s; worktree sessions cleaned: %s",
            context.delivery.delivery_id,
            full_name,
            number,
            "merged" if state.merged else "closed",
            ", ".join(cleaned),
        )
