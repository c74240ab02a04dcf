"""Installation webhooks: `ping`, `installation` and `installation_repositories`.

Records which accounts installed the app and which repositories each installation grants, so
the status page and later concerns know where the app may act. Each handler is an idempotent
upsert: a redelivered or replayed event leaves the same rows.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.github.events import InstallationUpdated
from storage import installations

log = logging.getLogger(__name__)

router = routing.Router()


def _repositories(items: list[dict[str, Any]] | None) -> list[tuple[int, str, bool]]:
    return [(item["id"], item["full_name"], bool(item.get("private"))) for item in items or []]


def _stream(installation_id: int) -> str:
    return f"installation:{installation_id}"


@router.register("ping")
async def on_ping(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
    hook = event.data.get("hook") or {}
    log.info(
        "ping from GitHub: hook %s for %s (%s)",
        event.data.get("hook_id"),
        hook.get("type", "?"),
        event.data.get("zen", ""),
    )


async def _record(event: sansio.Event, context: HandlerContext, *, with_repos: bool) -> int:
    installation = event.data["installation"]
    account = installation.get("account") or {}
    services = context.services
    await installations.upsert(
        services.db,
        installation_id=installation["id"],
        account_login=account.get("login", "?"),
        account_type=account.get("type", installation.get("target_type", "?")),
        target_type=installation.get("target_type"),
        repositories=_repositories(event.data.get("repositories")) if with_repos else None,
        now=services.clock.now(),
    )
    return int(installation["id"])


async def _announce(
    context: HandlerContext, installation_id: int, account: str, action: str
) -> None:
    repositories = await installations.repository_names(context.services.db, installation_id)
    updated = InstallationUpdated(
        installation_id=installation_id,
        account=account,
        action=action,
        repositories=repositories,
    )
    # Once per delivery: a kill between this commit and the delivery's `done` runs the handler
    # again, and the announcement must not come twice (bench/kill_points.py counts it).
    once = f"delivery:{context.delivery.id}:installation_updated"
    await context.services.bus.publish(_stream(installation_id), updated, once_key=once)


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
async def on_installation_created(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    installation_id = await _record(event, context, with_repos=event.data["action"] == "created")
    account = event.data["installation"].get("account", {}).get("login", "?")
    await _announce(context, installation_id, account, event.data["action"])


@router.register("installation", action="deleted")
async def on_installation_deleted(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    services = context.services
    installation_id = await _record(event, context, with_repos=False)
    await installations.set_flags(
        services.db, installation_id, deleted=True, now=services.clock.now()
    )
    if services.github is not None:
        services.github.forget_installation(installation_id)
    account = event.data["installation"].get("account", {}).get("login", "?")
    await _announce(context, installation_id, account, "deleted")


@router.register("installation", action="suspend")
@router.register("installation", action="unsuspend")
async def on_installation_suspension(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    services = context.services
    installation_id = await _record(event, context, with_repos=False)
    suspended = event.data["action"] == "suspend"
    await installations.set_flags(
        services.db, installation_id, suspended=suspended, now=services.clock.now()
    )
    account = event.data["installation"].get("account", {}).get("login", "?")
    await _announce(context, installation_id, account, event.data["action"])


@router.register("installation_repositories")
async def on_installation_repositories(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    services = context.services
    installation_id = await _record(event, context, with_repos=False)
    now = services.clock.now()
    added = _repositories(event.data.get("repositories_added"))
    removed = [repo_id for repo_id, _, _ in _repositories(event.data.get("repositories_removed"))]
    if added:
        await installations.add_repositories(services.db, installation_id, added, now)
    if removed:
        await installations.remove_repositories(services.db, installation_id, removed)
    account = event.data["installation"].get("account", {}).get("login", "?")
    await _announce(context, installation_id, account, event.data.get("action", "changed"))
