"""The JIRA concern's pure decisions, without a server: scope JQL, CLI choices, URLs, retries."""

from __future__ import annotations

import requests
from jira import JIRAError

from bot.jira.attachments import download_url
from bot.jira.cli import chosen_transition, list_query
from bot.jira.errors import (
    DEFAULT_RETRY_AFTER_S,
    JiraBadRequest,
    JiraUnavailable,
    is_throttled,
    retry_after,
    translate,
)
from bot.jira.scope import issue_scope, jql_filter_of, project_scope, projects_named_in


def throttled(status: int, retry_after_header: str | None) -> JIRAError:
    response = requests.Response()
    response.status_code = status
    if retry_after_header is not None:
        response.headers["Retry-After"] = retry_after_header
    return JIRAError("throttled", status_code=status, response=response)


def test_a_project_scope_ands_in_the_filter_without_its_order_by() -> None:
    jql_filter = jql_filter_of("labels = backend ORDER BY created DESC")
    assert project_scope("PROJ", jql_filter) == 'project = "PROJ" AND (labels = backend)'
    assert project_scope("PROJ", None) == 'project = "PROJ"'


def test_an_issue_scope_finds_one_id_within_the_filter() -> None:
    assert issue_scope("10001", "labels = backend") == "id = 10001 AND (labels = backend)"
    assert issue_scope("10001", None) == "id = 10001"


def test_the_projects_a_filter_starts_with_are_the_ones_synced() -> None:
    assert projects_named_in('project in (proj, "OPS") AND labels = x') == ["PROJ", "OPS"]
    assert projects_named_in("labels = x") is None


def test_list_ands_the_filters_given_and_falls_back_to_jira_jql() -> None:
    given = list_query({"project": "PROJ", "status": None}, text='a "b"', jql=None, default_jql="x")
    assert given == 'project = "PROJ" AND text ~ "a \\"b\\"" ORDER BY updated DESC'
    assert list_query({}, text=None, jql=None, default_jql="x") == "(x) ORDER BY updated DESC"
    assert list_query({}, text=None, jql=None, default_jql=None) is None


def test_a_transition_is_chosen_by_id_or_by_name_in_any_case() -> None:
    offered = [{"id": "11", "name": "Start"}, {"id": "21", "name": "Done"}]
    assert chosen_transition(offered, "21") == offered[1]
    assert chosen_transition(offered, "start") == offered[0]
    assert chosen_transition(offered, "Reopen") is None


def test_an_attachment_is_fetched_from_jira_url_whatever_host_jira_names() -> None:
    url = download_url(
        "http://127.0.0.1:8080/jira",
        "http://localhost:8080/jira",
        "http://localhost:8080/jira/secure/attachment/7/log.txt",
        "7",
    )
    assert url == "http://127.0.0.1:8080/jira/secure/attachment/7/log.txt"
    elsewhere = download_url("https://jira.example", None, "https://evil.example/a/7", "7")
    assert elsewhere == "https://jira.example/a/7"


def test_a_throttled_answer_waits_what_retry_after_asks_or_a_default() -> None:
    assert is_throttled(throttled(429, "7")) and is_throttled(throttled(503, None))
    assert not is_throttled(throttled(500, "7"))
    assert retry_after(throttled(429, "7")) == 7.0
    assert retry_after(throttled(429, "soon")) == DEFAULT_RETRY_AFTER_S
    assert retry_after(ValueError("not jira")) is None


def test_errors_are_translated_by_status_and_kind() -> None:
    assert isinstance(translate(JIRAError("bad jql", status_code=400), "search"), JiraBadRequest)
    unreachable = translate(requests.ConnectionError("refused"), "search")
    assert isinstance(unreachable, JiraUnavailable) and unreachable.status is None
