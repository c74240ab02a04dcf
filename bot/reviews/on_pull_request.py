"""`pull_request` for the review concern: which pull requests are watched, and their head.

biagent's own pull requests (its bot login is the author, or a pipeline recorded opening it:
storage/pipelines.py) are watched from `opened` (and reopened, ready, edited ones it already
knows are refreshed); `synchronize` moves the head, and a push by biagent itself is recognised
so it does not count as a person's; `closed` drops the pending batch, its queued check run
concluded too. A pipeline's PR closed also ends its pipeline: bot/pipelines/on_github.py.
"""

from __future__ import annotations

import logging

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.reviews.intake import arrival, is_biagent, upsert_pr
from bot.reviews.states import BatchStatus
from bot.reviews.unworked import conclude_unworked
from storage import pipelines, pull_requests, review_batches, review_iterations

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="ready_for_review")
@router.register("pull_request", action="edited")
async def on_pull_request_opened(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None:
        return
    pr_json = event.data["pull_request"]
    author = (pr_json.get("user") or {}).get("login", "")
    # A pipeline's PR is biagent's even before its bot login is known (GET /app pending).
    by_pipeline = await pipelines.pipeline_of_pull_request(
        arrived.service.db, arrived.repository["full_name"], int(pr_json["number"])
    )
    ours = by_pipeline is not None or is_biagent(arrived.service, author)
    if arrived.pr is None and not ours:
        return  # not biagent's and nobody asked for it
    await upsert_pr(
        arrived.service, pr_json, arrived.repository, arrived.installation_id, ours=ours
    )


@router.register("pull_request", action="synchronize")
async def on_pull_request_synchronize(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None or arrived.pr is None:
        return
    service, pr = arrived.service, arrived.pr
    after = event.data.get("after") or event.data["pull_request"]["head"]["sha"]
    sender = str((event.data.get("sender") or {}).get("login", ""))
    own = is_biagent(service, sender) or await review_iterations.is_biagent_commit(
        service.db, pr.id, after
    )
    await pull_requests.set_head(
        service.db, pr.id, after, pushed_by_biagent=own, now=service.clock.now()
    )
    if own:
        log.info("%s: synchronize by biagent's own push %s: ignored", pr.stream, after[:7])
    else:
        log.info("%s: %s pushed %s", pr.stream, sender, after[:7])


@router.register("pull_request", action="closed")
async def on_pull_request_closed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None or arrived.pr is None:
        return
    service, pr = arrived.service, arrived.pr
    state = "merged" if event.data["pull_request"].get("merged") else "closed"
    await pull_requests.set_state(service.db, pr.id, state, service.clock.now())
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is not None:  # its queued check run is concluded too, not left queued
        await conclude_unworked(
            service,
            arrived.gh,
            pr,
            pending,
            status=BatchStatus.DROPPED,
            note=f"the pull request was {state}",
        )
