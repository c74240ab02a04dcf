"""The tool-use loop end to end: real SDK -> loopback fake, real SQLite, real git worktree."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.agents.loop import AgentContext
from bot.agents.runner import AgentRunner
from bot.agents.tokens import token_catchup
from bot.clock import ManualClock
from storage import agent_runs, claude_sessions, token_buffer, tool_calls
from storage.database import Database
from tests.agents.conftest import MakeRunner, Recorder, git
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic


def script_edit_loop(fake: FakeAnthropic) -> None:
    fake.add(
        scripted.tool_use("file_read", {"path": "src/app.py"}, say="Let me read the code first."),
        scripted.tool_use(
            "edit_file",
            {"path": "src/app.py", "old_text": '"hello"', "new_text": '"hi"'},
            say="Now the edit.",
        ),
        scripted.tool_use("bash", {"command": "cat src/app.py && git status --short"}),
        scripted.text("The greeting is now 'hi'; git shows the one modified file."),
    )


async def test_multi_turn_loop_reads_edits_and_runs_a_command(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, worktree: Path, db: Database
) -> None:
    script_edit_loop(fake)
    result = await runner.run_step("implementer", context)
    assert result.status == "completed", result.error
    assert result.final_text == "The greeting is now 'hi'; git shows the one modified file."
    assert (worktree / "src/app.py").read_text() == 'GREETING = "hi"\n'
    assert git(worktree, "status", "--short").strip() == "M src/app.py"
    assert len(fake.requests) == 4
    first_results = fake.requests[1].tool_results()
    assert first_results[0]["content"] == 'GREETING = "hello"\n'
    bash_result = fake.requests[3].tool_results()[0]["content"]
    assert 'GREETING = "hi"' in bash_result and "M src/app.py" in bash_result
    calls = await tool_calls.for_run(db, result.run_id)
    assert [(c.tool, c.status, c.is_error) for c in calls] == [
        ("file_read", "completed", False),
        ("edit_file", "completed", False),
        ("bash", "completed", False),
    ]
    assert calls[0].arguments == {"path": "src/app.py"}
    assert all(c.duration_ms is not None for c in calls)
    changes = await tool_calls.file_changes(db, result.run_id)
    assert [(c.path, c.change_type, c.tool_call_id) for c in changes] == [
        ("src/app.py", "modified", calls[1].id)
    ]
    assert '-GREETING = "hello"' in changes[0].diff and '+GREETING = "hi"' in changes[0].diff


async def test_tool_calls_and_file_changes_are_published(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, events: Recorder
) -> None:
    script_edit_loop(fake)
    await runner.run_step("implementer", context)
    published = [e for e in events.take() if e["type"] != "token"]
    assert all(e["stream"] == "pr:octo/demo#7" for e in published)
    kinds = [e["type"] for e in published]
    assert kinds == [
        "agent_step_started",
        "tool_call_started",
        "tool_call_completed",
        "tool_call_started",
        "file_changed",
        "tool_call_completed",
        "tool_call_started",
        "tool_call_completed",
        "agent_step_finished",
    ]
    started = published[1]["data"]
    assert started["tool"] == "file_read" and started["arguments"] == {"path": "src/app.py"}
    assert published[2]["data"]["result"] == 'GREETING = "hello"\n'
    assert published[4]["data"] == {
        "path": "src/app.py",
        "change_type": "modified",
        "run_id": started["run_id"],
        "call_id": published[3]["data"]["call_id"],
    }
    assert published[-1]["data"]["status"] == "completed"


async def test_streamed_text_arrives_as_coalesced_token_frames_kept_in_the_buffer(
    runner: AgentRunner,
    fake: FakeAnthropic,
    context: AgentContext,
    events: Recorder,
    db: Database,
    clock: ManualClock,
) -> None:
    answer = "A fairly long answer that the fake streams in pieces of six characters each."
    fake.add(scripted.text(answer))
    await runner.run_step("planner", context)
    frames = [e for e in events.take() if e["type"] == "token"]
    deltas = -(-len(answer) // fake.chunk_size)
    assert 1 <= len(frames) < deltas  # coalesced: fewer frames than streamed pieces
    assert [f["data"]["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert "".join(f["data"]["text"] for f in frames) == answer
    assert all(f["id"] is None for f in frames)  # transient: not in the events table
    kept = await token_buffer.after(db, context.stream, 0, now=clock.now())
    assert [(k.seq, k.text) for k in kept] == [
        (f["data"]["seq"], f["data"]["text"]) for f in frames
    ]
    catchup = await token_catchup(db, clock, context.stream, 0)
    assert catchup.text == answer and catchup.from_seq == 1


async def test_bad_tool_arguments_come_back_as_a_tool_error_and_the_step_goes_on(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database
) -> None:
    fake.add(
        scripted.tool_use("file_read", {"file": "README.md"}),
        scripted.tool_use("no_such_tool", {}),
        scripted.tool_use("file_read", {"path": "../../etc/passwd"}),
        scripted.text("I could not read it."),
    )
    result = await runner.run_step("planner", context)
    assert result.status == "completed"
    errors = [fake.requests[i].tool_results()[0] for i in (1, 2, 3)]
    assert all(block["is_error"] for block in errors)
    assert "'path' is a required property" in errors[0]["content"]
    assert "unknown tool 'no_such_tool'" in errors[1]["content"]
    assert "refused" in errors[2]["content"] and "'..'" in errors[2]["content"]
    calls = await tool_calls.for_run(db, result.run_id)
    assert [c.is_error for c in calls] == [True, True, True]


async def test_an_agent_only_gets_the_tools_its_definition_lists(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(scripted.tool_use("bash", {"command": "echo hi"}), scripted.text("ok"))
    await runner.run_step("planner", context)
    offered = [tool["name"] for tool in fake.requests[0].body["tools"]]
    assert offered == ["file_read", "glob", "grep", "request_clarification", "report_output"]
    assert "unknown tool 'bash'" in fake.requests[1].tool_results()[0]["content"]


async def test_reported_output_is_validated_and_returned(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(
        scripted.tool_use("report_output", {"cycle_type": "backend"}),
        scripted.tool_use(
            "report_output", {"cycle_type": "backend", "summary": "A small backend change."}
        ),
        scripted.text("Triaged."),
    )
    result = await runner.run_step("triage", context)
    assert "'summary' is a required property" in fake.requests[1].tool_results()[0]["content"]
    assert result.output == {"cycle_type": "backend", "summary": "A small backend change."}


async def test_a_step_continues_its_stored_conversation_after_a_restart(
    make_runner, fake: FakeAnthropic, context: AgentContext, db: Database, worktree: Path
) -> None:
    first = make_runner()
    fake.add(
        scripted.tool_use("file_write", {"path": "notes.txt", "content": "step one\n"}),
        scripted.tool_use("bash", {"command": "echo ran >> ran.log"}),
        scripted.text("never delivered", delay_s=30),
    )
    task = asyncio.create_task(first.run_step("implementer", context))
    await asyncio.wait_for(fake.wait_for_requests(3), 10)
    task.cancel()  # the process stops while the third turn is in flight
    await asyncio.gather(task, return_exceptions=True)
    interrupted_request = fake.requests[2]

    second = make_runner()
    await second.start()  # a new process
    fake.add(scripted.text("Both done."))
    result = await second.run_step("implementer", context)
    assert result.status == "completed"
    resumed = fake.requests[3]
    assert resumed.messages == interrupted_request.messages  # the whole history, not a fresh start
    assert len(resumed.messages) == 5
    assert (worktree / "ran.log").read_text() == "ran\n"  # the command did not run twice
    runs = await agent_runs.for_session(db, result.session_id)
    assert [(r.status, r.reason) for r in runs] == [
        ("interrupted", "cancelled: paused, stopped or out of time"),
        ("completed", None),
    ]
    assert resumed.cache_read_bytes > 0


async def test_a_run_a_killed_process_left_running_is_marked_interrupted_at_start_up(
    make_runner: MakeRunner, db: Database, clock: ManualClock
) -> None:
    session = await claude_sessions.create(
        db, session_key="k", agent="implementer", model="m", pipeline_id=None, step_id=None,
        pr=None, now=clock.now(),
    )  # fmt: skip
    killed = await agent_runs.start(
        db, session_id=session.id, agent="implementer", stream="s", now=clock.now()
    )
    assert killed.status == "running"
    await make_runner().start()
    (run,) = await agent_runs.for_session(db, session.id)
    assert (run.status, run.reason) == ("interrupted", "the process stopped during the run")


async def test_a_broken_stream_after_tool_use_started_is_recorded_and_asked_again(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database, events: Recorder
) -> None:
    call = {"command": "echo once >> once.log"}
    fake.add(
        scripted.tool_use("bash", call, id="toolu_broken", say="Run it.", break_after_events=7),
        scripted.tool_use("bash", call, id="toolu_whole", say="Run it."),
        scripted.text("Done."),
    )
    result = await runner.run_step("implementer", context)
    assert result.status == "completed"
    assert fake.requests[1].messages == fake.requests[0].messages  # asked again from history
    assert (context.worktree / "once.log").read_text() == "once\n"
    calls = await tool_calls.for_run(db, result.run_id)
    assert [c.tool_use_id for c in calls] == ["toolu_whole"]
    stored = await agent_runs.interruptions(db, result.run_id)
    assert len(stored) == 1 and stored[0].tool_use_started
    assert [block["type"] for block in stored[0].partial] == ["text", "tool_use"]
    kinds = [e["type"] for e in events.take()]
    assert "agent_turn_interrupted" in kinds
    # The broken turn's input was billed by the API: it counts against the budget too.
    billed = await db.fetchall(
        "SELECT input_tokens + cache_write_tokens + cache_read_tokens FROM agent_costs"
        " WHERE run_id = ? ORDER BY id",
        (result.run_id,),
    )
    assert len(billed) == 3 and all(row[0] > 0 for row in billed)


async def test_a_stream_that_keeps_breaking_ends_the_step_interrupted(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    for _ in range(3):
        fake.add(scripted.tool_use("bash", {"command": "true"}, break_after_events=4))
    result = await runner.run_step("implementer", context)
    assert result.status == "interrupted"
    assert result.reason is not None and "broke 3 times" in result.reason


async def test_rate_limit_is_retried_by_the_sdk_honouring_retry_after(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(scripted.rate_limited(retry_after=0.3), scripted.text("Fine."))
    result = await runner.run_step("planner", context)
    assert result.status == "completed"
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.3
    assert second.headers.get("x-stainless-retry-count") == "1"
    assert second.body == first.body


async def test_persistent_overload_fails_the_step_with_its_error_recorded(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database, events: Recorder
) -> None:
    fake.add(*(scripted.overloaded(retry_after=0.01) for _ in range(3)))
    result = await runner.run_step("planner", context)
    assert result.status == "failed"
    assert len(fake.requests) == 3  # one try and the SDK's two retries
    assert result.error is not None and "Overloaded" in result.error
    run = await agent_runs.get(db, result.run_id)
    assert run is not None and run.status == "failed" and run.error == result.error
    finished = [e for e in events.take() if e["type"] == "agent_step_finished"]
    assert (
        finished[-1]["data"]["status"] == "failed" and "Overloaded" in finished[-1]["data"]["error"]
    )
