"""JIRA starts and answers pipelines (bot/pipelines/triggers.py), through signed webhooks built
from the real payloads, the real app and the JIRA fake."""

from __future__ import annotations

import copy
import json
from typing import Any

from bot.pipelines.triggers import (
    AnswerCommand,
    StartCommand,
    UnreadableCommand,
    label_added_in,
    parse_command,
    written_by,
)
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import RecordedRequest, Reply
from tests.helpers import jira_headers, load_json
from tests.pipelines.world import PROJECT, PipelineWorld, done, report, step_of
from web.keys import DISPATCHER

QUESTION = {"question": "Should greet() say Hello or Hey?", "choices": ["Hello", "Hey"]}


async def deliver(world: PipelineWorld, payload: dict[str, Any]) -> None:
    """POST a signed JIRA webhook and work it, as Jira and the dispatcher would."""
    body = json.dumps(payload).encode()
    client = world.app_client
    response = await client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert response.status == 202, await response.text()
    await client.app[DISPATCHER].drain()


def label_added(world: PipelineWorld, key: str, label: str = "biagent") -> dict[str, Any]:
    """The label put on the ticket in Jira, and the jira:issue_updated Jira sends for it."""
    issue = world.jira.issue(key)
    before = list(issue.fields["labels"])
    world.jira.update_issue(key, labels=[*before, label])
    payload = load_json("jira/webhooks-cloud/jira-issue_updated.status.json")
    payload["issue"].update(id=issue.id, key=key)
    payload["issue"]["fields"]["labels"] = [*before, label]
    payload["changelog"]["items"] = [
        {
            "field": "labels",
            "fieldtype": "jira",
            "from": None,
            "fromString": " ".join(before),
            "to": None,
            "toString": " ".join([*before, label]),
        }
    ]
    return payload


def comment(world: PipelineWorld, key: str, body: str, **author: Any) -> dict[str, Any]:
    """The comment_created Jira sends for a person's comment (or `author`'s) on the ticket."""
    issue = world.jira.issue(key)
    payload = load_json("jira/webhooks-cloud/comment_created.json")
    payload["issue"].update(id=issue.id, key=key)
    payload["comment"]["body"] = body
    payload["comment"]["self"] = f"{world.jira.url}/rest/api/2/issue/{issue.id}/comment/20000"
    if author:
        payload["comment"]["author"] = author
    return payload


async def pipelines_of(world: PipelineWorld, key: str) -> list[dict[str, Any]]:
    return list((await world.api("GET", f"/api/pipelines?ticket={key}"))["pipelines"])


def comments_on(world: PipelineWorld, key: str) -> list[str]:
    return [str(note["body"]) for note in world.jira.issue(key).comments]


def test_a_command_is_read_from_the_start_of_a_comment_only() -> None:
    assert parse_command("/biagent start") == StartCommand(None)
    assert parse_command("  /BIAGENT Start Backend\nthanks") == StartCommand("backend")
    assert parse_command("/biagent answer 12 Hey\nand why") == AnswerCommand(12, "Hey\nand why")
    assert parse_command("Answer with a comment starting with: /biagent answer 3 ...") is None
    assert parse_command("/biagentstart") is None
    for unreadable in ("/biagent", "/biagent answer 3", "/biagent answer x y", "/biagent go"):
        assert isinstance(parse_command(unreadable), UnreadableCommand), unreadable


def test_only_a_changelog_that_adds_the_label_counts() -> None:
    def labels(before: str, after: str) -> dict[str, Any]:
        return {"items": [{"field": "labels", "fromString": before, "toString": after}]}

    assert label_added_in(labels("backend", "backend BIAgent"), "biagent")
    assert not label_added_in(labels("biagent", "biagent backend"), "biagent")
    assert not label_added_in(labels("biagent", ""), "biagent")
    assert not label_added_in(labels("", "biagent-later"), "biagent")
    assert not label_added_in(None, "biagent")


def test_biagents_own_account_is_known_by_id_name_or_email() -> None:
    cloud = {"accountId": "557058:bot", "emailAddress": "Bot@Example.com"}
    assert written_by({"accountId": "557058:bot"}, cloud)
    assert written_by({"accountId": "other", "emailAddress": "bot@example.com"}, cloud)
    assert not written_by({"accountId": "557058:mia"}, cloud)
    assert written_by({"name": "bot", "key": "JIRAUSER1"}, {"name": "bot"})
    assert not written_by({"displayName": "bot"}, {"name": "bot"})


async def test_the_trigger_label_added_starts_one_pipeline(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    added = label_added(world, key)
    await deliver(world, added)
    [started] = await pipelines_of(world, key)
    assert (started["trigger"], started["created_by"]) == ("jira_label", "James Williams")
    assert started["cycle_type"] == "backend"
    held = await world.settle(started["id"])
    assert held["status"] == "waiting_for_approval"  # it ran up to the plan gate

    await deliver(world, copy.deepcopy(added))  # Jira sends it again: a new delivery
    assert [p["id"] for p in await pipelines_of(world, key)] == [started["id"]]
    assert not comments_on(world, key)


async def test_a_later_update_with_the_label_still_on_starts_nothing(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    await deliver(world, label_added(world, key))
    [started] = await pipelines_of(world, key)
    await world.settle(started["id"])
    await world.act(started["id"], "cancel", {"reason": "not now"})
    status_changed = load_json("jira/webhooks-cloud/jira-issue_updated.status.json")
    status_changed["issue"].update(id=world.jira.issue(key).id, key=key)
    await deliver(world, status_changed)
    assert [p["status"] for p in await pipelines_of(world, key)] == ["cancelled"]


async def test_a_ticket_created_with_the_label_starts_its_pipeline(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket(labels=("backend", "biagent"))
    created = load_json("jira/webhooks-cloud/jira-issue_created.json")
    created["issue"].update(id=world.jira.issue(key).id, key=key)
    created["issue"]["fields"]["labels"] = ["backend", "biagent"]
    await deliver(world, created)
    [started] = await pipelines_of(world, key)
    assert started["trigger"] == "jira_label"
    await world.settle(started["id"])


async def test_a_ticket_without_a_repository_is_told_why_no_pipeline_starts(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = world.jira.add_issue(PROJECT, "Greet people by saying Hello")
    await world.api("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
    await deliver(world, label_added(world, key))
    assert await pipelines_of(world, key) == []
    [why] = comments_on(world, key)
    assert why.startswith(f"biagent cannot start a pipeline for {key}")
    assert "no linked repository" in why


async def test_a_start_comment_starts_a_pipeline_of_the_cycle_type_named(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    await deliver(world, comment(world, key, "/BIAgent start backend\nplease"))
    [started] = await pipelines_of(world, key)
    assert (started["trigger"], started["created_by"]) == ("jira_comment", "Eeshan Garg")
    assert started["cycle_type"] == "backend"
    assert started["cycle_reason"] == "chosen by Eeshan Garg"
    await world.settle(started["id"])

    await deliver(world, comment(world, key, "/biagent start"))
    assert len(await pipelines_of(world, key)) == 1
    assert comments_on(world, key)[-1].startswith(f"biagent's pipeline {started['id']} is ")


async def test_a_start_comment_naming_an_unknown_cycle_type_leaves_no_pipeline(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    await deliver(world, comment(world, key, "/biagent start backlog"))
    assert await pipelines_of(world, key) == []
    assert "unknown cycle type 'backlog'" in comments_on(world, key)[-1]
    await deliver(world, comment(world, key, "/biagent start"))  # the ticket is not blocked
    assert len(await pipelines_of(world, key)) == 1


class Resumed:
    """The planner's turn after the answer: it records the request, then reports its plan."""

    def __init__(self) -> None:
        self.request: RecordedRequest | None = None

    def __call__(self, request: RecordedRequest) -> Reply:
        self.request = request
        return report({"plan": "1. Say Hey.", "files": ["greet.py"]})

    def answer_given(self) -> str:
        assert self.request is not None, "the planner was not asked again"
        [result] = self.request.tool_results()
        content = result["content"]
        return content if isinstance(content, str) else " ".join(b["text"] for b in content)


async def asked_a_question(world: PipelineWorld, resumed: Resumed) -> tuple[str, dict[str, Any]]:
    """A backend pipeline whose planner asks QUESTION; the ticket and the waiting pipeline."""
    await world.start()
    key = await world.ticket(labels=("backend",))
    world.model.script(
        "planner", scripted.tool_use("request_clarification", QUESTION), resumed, done()
    )
    waiting = await world.settle((await world.create(key, start=True))["id"])
    assert waiting["status"] == "waiting_for_input"
    assert step_of(waiting, "plan")["status"] == "waiting_for_input"
    [asked] = waiting["clarifications"]
    assert (asked["question"], asked["choices"], asked["status"]) == (
        QUESTION["question"], QUESTION["choices"], "open",
    )  # fmt: skip
    [posted] = comments_on(world, key)
    assert QUESTION["question"] in posted
    assert f"/biagent answer {asked['id']} ..." in posted
    return key, waiting


async def test_an_answer_through_the_api_continues_the_step(world: PipelineWorld) -> None:
    resumed = Resumed()
    _, waiting = await asked_a_question(world, resumed)
    question = waiting["clarifications"][0]["id"]
    path = f"/api/clarifications/{question}/answer"
    refused = await world.api("POST", path, {"answer": "Howdy", "answered_by": "mia"}, status=400)
    assert refused["error"]["code"] == "invalid_choice"

    await world.api("POST", path, {"answer": "hey", "answered_by": "mia"})
    went_on = await world.settle(waiting["id"])
    assert resumed.answer_given() == "A person answered: Hey"
    assert went_on["status"] == "waiting_for_approval"  # the plan, now at its gate
    assert went_on["clarifications"][0]["answered_by"] == "mia"
    assert step_of(went_on, "plan")["reported"]["plan"] == "1. Say Hey."


async def test_an_answer_comment_continues_the_step_and_errors_are_told_on_the_ticket(
    world: PipelineWorld,
) -> None:
    resumed = Resumed()
    key, waiting = await asked_a_question(world, resumed)
    question = waiting["clarifications"][0]["id"]
    await deliver(world, comment(world, key, f"/biagent answer {question} Howdy"))
    assert "answer with one of: Hello, Hey" in comments_on(world, key)[-1]
    await deliver(world, comment(world, key, f"/biagent answer {question + 7} Hey"))
    assert comments_on(world, key)[-1] == f"biagent has no question {question + 7} on {key}."
    assert (await world.pipeline(waiting["id"]))["status"] == "waiting_for_input"

    await deliver(world, comment(world, key, f"/biagent answer {question} Hey"))
    went_on = await world.settle(waiting["id"])
    assert resumed.answer_given() == "A person answered: Hey"
    assert went_on["status"] == "waiting_for_approval"
    assert step_of(went_on, "plan")["reported"]["plan"] == "1. Say Hey."
    assert went_on["clarifications"][0]["answered_by"] == "Eeshan Garg"
    told = len(comments_on(world, key))
    await deliver(world, comment(world, key, f"/biagent answer {question} Hey"))  # Jira again
    assert len(comments_on(world, key)) == told


async def test_biagents_own_comments_are_never_commands(world: PipelineWorld) -> None:
    resumed = Resumed()
    key, waiting = await asked_a_question(world, resumed)
    question = waiting["clarifications"][0]["id"]
    [posted] = comments_on(world, key)
    ours = {"name": "bot", "displayName": "biagent bot", "emailAddress": world.jira.email}
    await deliver(world, comment(world, key, posted, **ours))
    await deliver(world, comment(world, key, f"/biagent answer {question} Hey", **ours))
    await deliver(world, comment(world, key, f"Thanks! /biagent answer {question} Hey"))
    after = await world.pipeline(waiting["id"])
    assert after["status"] == "waiting_for_input"
    assert after["clarifications"][0]["status"] == "open"
    assert comments_on(world, key) == [posted]
