"""GET /costs: what the agents spent, per UTC day, pipeline, pull request and installation.

From the agent cost ledger (`agent_costs`, storage/cost_report.py: one row per model call, so
every sum counts a call once) and, beside each pull request, what its review runs cost as the
review engine reported it (`review_iterations`: what the review caps count; with the agent
engine these are the same calls summed per run). A call belongs to an installation through
its pipeline's repositories or its pull request's repository: the installation that grants
that repository (or registered it). Days are UTC days, as the installation's daily review cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.services import Services
from storage import cost_report, installations, pipelines, pull_requests, repositories, review_costs
from storage.cost_report import NOTHING, Spend
from storage.database import Database
from web.keys import SERVICES

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class PipelineSpend:
    pipeline_id: int
    ticket: str | None  # None: the pipeline is gone
    status: str | None
    ledger: Spend


@dataclass(frozen=True, slots=True)
class PullRequestSpend:
    name: str  # owner/name#number
    pr_id: int | None  # its page, when biagent knows the pull request
    ledger: Spend
    review_runs: int
    review_cost_usd: float


@dataclass(frozen=True, slots=True)
class InstallationSpend:
    installation_id: int | None  # None: no installation known for the calls' repositories
    account: str | None
    ledger: Spend
    review_today_usd: float  # review runs since 00:00 UTC, the daily cap's count


def repository_of(pr: str) -> str:
    """`owner/name` of a ledger's `owner/name#number`."""
    return pr.rsplit("#", 1)[0]


def installation_of(repository_names: tuple[str, ...], owners: dict[str, int]) -> int | None:
    """The installation of the first of `repository_names` that one is known for."""
    return next((owners[name] for name in repository_names if name in owners), None)


async def owners_of(db: Database) -> dict[str, int]:
    """Repository full name -> installation: the grants GitHub announced, then registrations."""
    owners = {
        repository.full_name: repository.installation_id
        for repository in await repositories.list_all(db)
        if repository.installation_id is not None
    }
    for installation in await installations.list_all(db):
        owners.update(dict.fromkeys(installation.repositories, installation.id))
    return owners


async def pipeline_rows(db: Database) -> list[PipelineSpend]:
    rows = []
    for pipeline_id, spend in await cost_report.by_pipeline(db):
        pipeline = await pipelines.get_pipeline(db, pipeline_id)
        ticket = None if pipeline is None else pipeline.ticket_key
        status = None if pipeline is None else pipeline.status
        rows.append(PipelineSpend(pipeline_id, ticket, status, spend))
    return rows


async def pull_request_rows(db: Database) -> list[PullRequestSpend]:
    reviewed = {
        f"{spend.repository}#{spend.number}": spend
        for spend in await review_costs.by_pull_request(db)
    }
    ledger = dict(await cost_report.by_pull_request(db))
    rows = []
    for name in sorted(set(ledger) | set(reviewed)):
        review = reviewed.get(name)
        pr_id = review.pr_id if review else None
        repository, _, number = name.rpartition("#")
        if pr_id is None and number.isascii() and number.isdigit() and len(number) < 10:
            found = await pull_requests.find_pull_request(db, repository, int(number))
            pr_id = None if found is None else found.id
        rows.append(
            PullRequestSpend(
                name=name,
                pr_id=pr_id,
                ledger=ledger.get(name, NOTHING),
                review_runs=review.runs if review else 0,
                review_cost_usd=review.cost_usd if review else 0.0,
            )
        )
    rows.sort(key=lambda row: -max(row.ledger.cost_usd, row.review_cost_usd))
    return rows


async def installation_rows(db: Database, now: datetime) -> list[InstallationSpend]:
    owners = await owners_of(db)
    repositories_of: dict[int, tuple[str, ...]] = {}
    totals: dict[int | None, Spend] = {}
    for pipeline_id, pr, spend in await cost_report.by_source(db):
        if pipeline_id is not None:
            if pipeline_id not in repositories_of:
                pipeline = await pipelines.get_pipeline(db, pipeline_id)
                repositories_of[pipeline_id] = () if pipeline is None else pipeline.repositories
            names = repositories_of[pipeline_id]
        else:
            names = ()
        if pr is not None:
            names = (*names, repository_of(pr))
        owner = installation_of(names, owners)
        totals[owner] = totals.get(owner, NOTHING).plus(spend)
    accounts = {found.id: found.account_login for found in await installations.list_all(db)}
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for installation_id in sorted(set(totals) | set(accounts), key=lambda i: (i is None, i)):
        today = 0.0
        if installation_id is not None:
            today = await review_costs.installation_cost(db, installation_id, since=midnight)
        rows.append(
            InstallationSpend(
                installation_id,
                accounts.get(installation_id) if installation_id is not None else None,
                totals.get(installation_id, NOTHING),
                today,
            )
        )
    return rows


async def page_of(services: Services) -> dict[str, Any]:
    db, settings = services.db, services.settings
    return {
        "total": await cost_report.total(db),
        "days": await cost_report.by_day(db),
        "pipelines": await pipeline_rows(db),
        "pull_requests": await pull_request_rows(db),
        "installations": await installation_rows(db, services.clock.now()),
        "installation_day_cap": settings.review_max_usd_per_installation_day,
    }


@routes.get("/costs")
@aiohttp_jinja2.template("costs.html")
async def costs_page(request: web.Request) -> dict[str, Any]:
    return await page_of(request.app[SERVICES])
