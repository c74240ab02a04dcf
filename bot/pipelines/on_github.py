"""`pull_request` for the pipelines concern: the pull request a pipeline opened ends it.

The last phase of a pipeline opens a pull request (pull_request.py) and the pipeline waits for
its review (docs/pipelines.md). When GitHub says that pull request is closed, merged completes
the pipeline (its worktree removed) and closed unmerged cancels it
(`Pipelines.pull_request_closed`, service.py). A pull request no pipeline opened is left alone.

The reviews concern handles the same `closed` webhook on its own (bot/reviews/on_pull_request.py
drops the pending batch) and so does the worktrees concern (bot/worktrees/webhooks.py removes
the PR's review worktrees): the dispatcher runs each concern's router apart. A redelivery
changes nothing: an ended pipeline only has its PR's state written again.
"""

from __future__ import annotations

import logging

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="closed")
async def on_pull_request_closed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    pipelines = context.services.pipelines
    if pipelines is None:
        return
    pull_request = event.data["pull_request"]
    repository = str(event.data["repository"]["full_name"])
    number = int(pull_request["number"])
    merged = bool(pull_request.get("merged"))
    log.info(
        "delivery %s: %s#%d %s",
        context.delivery.delivery_id,
        repository,
        number,
        "merged" if merged else "closed unmerged",
    )
    await pipelines.pull_request_closed(repository, number, merged=merged)
