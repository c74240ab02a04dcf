"""Caps: the limits that pause a pull request before biagent runs away with it.

Checked when a batch is due, before the engine runs: agent runs per pull request per hour,
consecutive biagent commits (reset when a person pushes), dollars per pull request, dollars per
installation per UTC day. `/biagent resume` makes the per-PR caps count afresh from that moment;
the installation's daily budget is not a PR's to lift.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.reviews.rules import RepoRules
from storage import review_costs
from storage.database import Database
from storage.pull_requests import PullRequest
from storage.timestamps import from_text


async def cap_reached(db: Database, pr: PullRequest, rules: RepoRules, now: datetime) -> str | None:
    """Why the next run must not happen (one sentence), or None."""
    reset_at = from_text(pr.caps_reset_at) if pr.caps_reset_at else None
    hour_ago = now - timedelta(hours=1)
    since = max(hour_ago, reset_at) if reset_at else hour_ago
    runs = await review_costs.runs_since(db, pr.id, since)
    if runs >= rules.max_runs_per_hour:
        return (
            f"it has run {runs} times on this pull request in the last hour"
            f" (cap: {rules.max_runs_per_hour} runs per hour)"
        )
    if pr.consecutive_commits >= rules.max_consecutive_commits:
        return (
            f"it has pushed {pr.consecutive_commits} commits in a row without a person pushing"
            f" (cap: {rules.max_consecutive_commits})"
        )
    spent = await review_costs.pr_cost(db, pr.id, since=reset_at)
    if spent >= rules.max_usd_per_pr:
        return (
            f"it has spent ${spent:.2f} on this pull request"
            f" (cap: ${rules.max_usd_per_pr:.2f} per pull request)"
        )
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spent_today = await review_costs.installation_cost(db, pr.installation_id, since=day_start)
    if spent_today >= rules.max_usd_per_installation_day:
        return (
            f"this installation has spent ${spent_today:.2f} today"
            f" (cap: ${rules.max_usd_per_installation_day:.2f} per day; it lifts at midnight UTC)"
        )
    return None
