"""The last phase's effect: push the pipeline's branch and open its pull request on GitHub.

The title and body come from the `pr_author` agent's report; biagent adds what a reviewer needs
beside it (the ticket, the plan, the risk acknowledgements, the test results, the cost). The PR
is a draft when the tests failed. Opening is idempotent: an open PR of the same head branch is
found first (a crash between GitHub's answer and our commit repeats nothing); a closed or merged
one is an earlier pipeline's for the same ticket, and this pipeline opens its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.github.app import GitHubApp
from bot.github.connection import GitHubConnection
from bot.pipelines import outcomes
from storage import pipelines, risks, step_outputs
from storage.database import Database
from storage.pipelines import Pipeline
from storage.repositories import Repository
from storage.risks import Risk

BODY_SECTION_CAP = 4000


class PullRequestFailed(Exception):
    """GitHub refused the pull request, or the GitHub App is not configured."""


@dataclass(frozen=True, slots=True)
class OpenedPullRequest:
    repository: str
    number: int
    url: str
    draft: bool


@dataclass(frozen=True, slots=True)
class PullRequestFacts:
    """What biagent adds under the agent's body."""

    ticket_key: str
    ticket_url: str | None
    plan: str | None
    risks: tuple[Risk, ...]
    test_results: str | None
    tests_passed: bool
    cost_usd: float


async def gather_facts(
    db: Database, pipeline: Pipeline, ticket_url: str | None
) -> PullRequestFacts:
    """What the pipeline's rows say a reviewer should see under the agent's PR body."""
    steps = await pipelines.list_steps(db, pipeline.id)
    outputs = await step_outputs.outputs_of(db, pipeline.id)
    plan = test_results = None
    passed = False
    for step in steps:
        current = outputs.get(step.id)
        if current is None:
            continue
        if step.artifact_kind == "plan":
            plan = current.text
        elif step.artifact_kind == "test_results":
            test_results, passed = current.text, outcomes.tests_passed(current.output)
    fresh = await pipelines.get_pipeline(db, pipeline.id)
    return PullRequestFacts(
        ticket_key=pipeline.ticket_key,
        ticket_url=ticket_url,
        plan=plan,
        risks=tuple(await risks.risks_of(db, pipeline.id)),
        test_results=test_results,
        tests_passed=passed or not any(s.artifact_kind == "test_results" for s in steps),
        cost_usd=(fresh or pipeline).cost_usd,
    )


def _capped(text: str) -> str:
    text = text.strip()
    return text if len(text) <= BODY_SECTION_CAP else text[:BODY_SECTION_CAP] + "\n[...]"


def pull_request_body(agent_body: str, facts: PullRequestFacts) -> str:
    ticket = f"[{facts.ticket_key}]({facts.ticket_url})" if facts.ticket_url else facts.ticket_key
    parts = [agent_body.strip(), "---", f"Ticket: {ticket}"]
    if facts.plan:
        parts.append(f"<details><summary>Plan</summary>\n\n{_capped(facts.plan)}\n</details>")
    if facts.risks:
        lines = [
            f"- **{risk.severity}** {risk.title}"
            + (f": acknowledged by {risk.acknowledged_by}" if risk.acknowledged_by else "")
            + (f" ({risk.note})" if risk.note else "")
            for risk in facts.risks
        ]
        parts.append("Risks:\n" + "\n".join(lines))
    verdict = "pass" if facts.tests_passed else "FAIL (this pull request is a draft)"
    parts.append(f"Tests: {verdict}")
    if facts.test_results:
        parts.append(
            f"<details><summary>Test results</summary>\n\n{_capped(facts.test_results)}\n</details>"
        )
    parts.append(f"Agent cost: ${facts.cost_usd:.2f}")
    return "\n\n".join(part for part in parts if part)


class PullRequestOpener:
    def __init__(self, connection: GitHubConnection) -> None:
        self.connection = connection

    @property
    def github(self) -> GitHubApp | None:
        """The App, read when it is needed: it may be created while a pipeline runs."""
        return self.connection.app

    async def open(
        self,
        repository: Repository,
        *,
        branch: str,
        title: str,
        body: str,
        draft: bool,
    ) -> OpenedPullRequest:
        if self.github is None or repository.installation_id is None:
            raise PullRequestFailed(
                f"{repository.full_name}: the GitHub App is not configured or not installed"
            )
        gh = self.github.client(repository.installation_id)
        owner = repository.full_name.split("/", 1)[0]
        existing = await self._existing(gh, repository.full_name, f"{owner}:{branch}")
        if existing is not None:
            return _opened(repository.full_name, existing)
        base = repository.default_branch or "main"
        try:
            created = await gh.post(
                f"/repos/{repository.full_name}/pulls",
                data={"title": title, "head": branch, "base": base, "body": body, "draft": draft},
            )
        except Exception as error:
            raise PullRequestFailed(f"{repository.full_name}: {error}") from error
        return _opened(repository.full_name, created)

    @staticmethod
    async def _existing(gh: Any, full_name: str, head: str) -> dict[str, Any] | None:
        async for pull in gh.getiter(
            f"/repos/{full_name}/pulls{{?state,head}}", {"state": "open", "head": head}
        ):
            if isinstance(pull, dict):
                return pull
        return None


def _opened(full_name: str, pull: dict[str, Any]) -> OpenedPullRequest:
    return OpenedPullRequest(
        full_name, int(pull["number"]), str(pull["html_url"]), bool(pull.get("draft"))
    )
