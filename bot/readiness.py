"""Which integrations work, for operators: GET /readyz and the `biagent_integration_state` metric.

A decision from what the services hold and what the JIRA sync log says; no I/O of its own.
`off` is a feature that is not configured, `degraded` one that is configured and not working
(the GitHub App's identity not loaded yet, the last JIRA sync failed, an instance older than
the database's schema that claims no work). The database is checked
by the caller: without it nothing works, while any of these may be off and the rest still serve.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from bot.services import Services
from storage.jira_sync import RunStatus
from storage.operations import JiraSyncState


class IntegrationState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Integration:
    name: str
    state: IntegrationState
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"state": self.state, "detail": self.detail}


def _github(services: Services) -> Integration:
    if services.github is None:
        return Integration(
            "github", IntegrationState.OFF, "GITHUB_APP_ID is not set and no App was created"
        )
    if services.github.identity is None:
        return Integration(
            "github", IntegrationState.DEGRADED, "the App's identity (GET /app) is not loaded yet"
        )
    return Integration("github", IntegrationState.OK, "identity loaded")


def _webhooks(services: Services) -> Integration:
    connection = services.github_connection
    if connection is None or connection.webhook_secret is None:
        return Integration("webhooks", IntegrationState.OFF, "GITHUB_WEBHOOK_SECRET is not set")
    return Integration("webhooks", IntegrationState.OK, "signed webhooks accepted")


def _agents(services: Services) -> Integration:
    if not services.settings.role.works:
        return Integration("agents", IntegrationState.OFF, "a web instance: the workers run them")
    if services.agents is None:
        return Integration("agents", IntegrationState.OFF, "ANTHROPIC_API_KEY is not set")
    return Integration("agents", IntegrationState.OK, "agent runner started")


def _jira(services: Services, syncs: Sequence[JiraSyncState]) -> Integration:
    if services.jira is None:
        return Integration("jira", IntegrationState.OFF, "JIRA_URL is not set")
    failed = sum(1 for sync in syncs if sync.last_status == RunStatus.FAILED)
    if failed:
        return Integration(
            "jira", IntegrationState.DEGRADED, f"the last sync failed for {failed} project(s)"
        )
    if not syncs:
        return Integration("jira", IntegrationState.OK, "no sync has finished yet")
    return Integration("jira", IntegrationState.OK, "the last sync of every project completed")


def _work(services: Services) -> Integration:
    """Whether this instance claims work (deliveries, batches, pipelines): not while the
    database's schema is newer than its code (bot/claims.py, as last checked)."""
    claims = services.claims
    if claims.outdated:
        return Integration(
            "work",
            IntegrationState.DEGRADED,
            f"claims no work: the database is at schema version {claims.database_version},"
            f" newer than this code's {claims.code_version}; upgrade this instance",
        )
    return Integration(
        "work",
        IntegrationState.OK,
        f"instance {claims.instance} claims work (leases of {claims.lease_s:g}s)",
    )


def integrations(services: Services, syncs: Sequence[JiraSyncState]) -> list[Integration]:
    """Each integration's state, in a fixed order."""
    return [
        _github(services),
        _webhooks(services),
        _agents(services),
        _jira(services, syncs),
        _work(services),
    ]
