"""`check_run` for the review concern: Re-run of a `biagent/review` check run.

GitHub's own Re-run (`rerequested`) and the check run's Re-run button (`requested_action`
"rerun") copy a finished batch into a new one that is due at once.
"""

from __future__ import annotations

import logging

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.reviews import checks
from bot.reviews.intake import arrival
from bot.reviews.states import BatchStatus
from storage import review_batches

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("check_run", action="rerequested")
@router.register("check_run", action="requested_action")
async def on_check_run_rerun(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None:
        return
    service = arrived.service
    check_run = event.data["check_run"]
    if check_run.get("name") != checks.CHECK_NAME:
        return
    app = check_run.get("app") or {}
    if service.app_id is not None and app.get("id") not in (None, service.app_id):
        return
    if event.data.get("action") == "requested_action":
        identifier = (event.data.get("requested_action") or {}).get("identifier")
        if identifier != checks.RERUN_ACTION["identifier"]:
            return
    batch = await review_batches.batch_for_check_run(service.db, int(check_run["id"]))
    if batch is None:
        return
    if BatchStatus(batch.status).in_progress:
        return  # still pending or being worked: nothing to re-run yet
    retried = await review_batches.copy_for_retry(service.db, batch.id, now=service.clock.now())
    if retried is not None:
        log.info("batch %d: re-run requested; batch %d is due now", batch.id, retried.id)
        service.wake()
