"""What a JIRA sync covers, as pure functions of JIRA_JQL: project keys, scope JQL, streams.

A project's scope is `project = "KEY"`, narrowed by JIRA_JQL when that is set (its ORDER BY
dropped: the sync orders pages itself). When JIRA_JQL starts with `project = X` or
`project in (X, Y)`, those are the projects the scheduled sync covers; otherwise every
project the account can see.
"""

from __future__ import annotations

import re

# The sync_status row of a run that failed before it could start, and its stream's project.
ALL_PROJECTS = "*"

_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
_ORDER_BY = re.compile(r"\border\s+by\b.*$", re.IGNORECASE | re.DOTALL)
_PROJECT_CLAUSE = re.compile(
    r"^\s*project\s*(?:=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?|in\s*\(([^)]*)\))\s*(?:$|\band\b)",
    re.IGNORECASE,
)


def stream_of(project: str) -> str:
    """The bus stream of a project's sync and ticket events (`jira:*`: the project list)."""
    return f"jira:{project}"


def is_project_key(text: str) -> bool:
    """Whether `text` (upper-cased) can be a Jira project key."""
    return _PROJECT_KEY.match(text.upper()) is not None


def jql_filter_of(jql: str | None) -> str | None:
    """JIRA_JQL as a filter to AND into the sync's queries: without its ORDER BY, or None."""
    return _ORDER_BY.sub("", jql).strip() if jql else None


def projects_named_in(jql: str | None) -> list[str] | None:
    """The project keys a JQL filter starts with (`project = X` / `project in (X, Y)`), if so."""
    if not jql:
        return None
    match = _PROJECT_CLAUSE.match(_ORDER_BY.sub("", jql))
    if match is None:
        return None
    if match.group(1):
        return [match.group(1).upper()]
    keys = [part.strip().strip("\"'").upper() for part in match.group(2).split(",")]
    return [key for key in keys if key] or None


def project_scope(project: str, jql_filter: str | None) -> str:
    """The JQL of everything a project's sync mirrors."""
    base = f'project = "{project}"'
    return f"{base} AND ({jql_filter})" if jql_filter else base


def issue_scope(issue_id: str, jql_filter: str | None) -> str:
    """The JQL that finds one issue by id, if it is within the sync's scope."""
    return f"id = {issue_id}" + (f" AND ({jql_filter})" if jql_filter else "")
