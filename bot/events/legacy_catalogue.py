"""The message types still published as (type name, dict): going away, concern by concern.

Issue 9 moves every emitter to a typed Struct (`bot.events.message`); until a concern has moved,
`EventBus.publish(stream, "name", {...})` is checked against this list. Delete this module when
nothing names a type as a string any more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageType:
    name: str
    concern: str
    fields: tuple[str, ...]
    doc: str

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(name for name in self.fields if not name.endswith("?"))


def _m(name: str, concern: str, fields: str, doc: str) -> MessageType:
    return MessageType(name, concern, tuple(fields.split()), doc)


CATALOGUE: tuple[MessageType, ...] = (
    # service foundation
    _m(
        "delivery_processed",
        "webhooks",
        "delivery_pk source event action? status error?",
        "A stored webhook delivery was worked: done, failed (will retry) or dead.",
    ),
    _m(
        "installation_updated",
        "github",
        "installation_id account action repositories?",
        "The app was installed, removed, suspended, or its repositories changed.",
    ),
    # JIRA
    _m(
        "sync_progress",
        "jira",
        "project done total? run_id?",
        "A JIRA sync stored another page (done: issues seen so far).",
    ),
    _m(
        "sync_complete",
        "jira",
        "project created updated deleted duration_s run_id? kind? seen? requests?",
        "A JIRA sync finished.",
    ),
    _m("sync_error", "jira", "project error run_id? kind?", "A JIRA sync failed."),
    _m(
        "ticket_updated",
        "jira",
        "key fields? project? created? deleted?",
        "One mirrored ticket changed (a webhook), was created or deleted.",
    ),
    _m(
        "tickets_updated",
        "jira",
        "keys project? created? deleted?",
        "A batch of mirrored tickets changed (a sync page), with those created or deleted.",
    ),
    # pipelines
    _m(
        "pipeline_started",
        "pipelines",
        "pipeline_id ticket cycle_type phases?",
        "A ticket pipeline started.",
    ),
    _m("step_started", "pipelines", "pipeline_id step_id phase", "A pipeline step started."),
    _m(
        "step_completed",
        "pipelines",
        "pipeline_id step_id phase outcome?",
        "A pipeline step finished.",
    ),
    _m(
        "step_restarted",
        "pipelines",
        "pipeline_id step_id phase feedback?",
        "A step was restarted, possibly with feedback.",
    ),
    _m(
        "step_interrupted",
        "pipelines",
        "pipeline_id step_id phase reason",
        "A step stopped before its end (crash, pause, broken stream).",
    ),
    _m("pipeline_paused", "pipelines", "pipeline_id reason?", "A pipeline was paused."),
    _m("pipeline_resumed", "pipelines", "pipeline_id", "A pipeline was resumed."),
    _m("pipeline_completed", "pipelines", "pipeline_id pr_url?", "A pipeline finished."),
    _m(
        "pipeline_failed",
        "pipelines",
        "pipeline_id error step_id? phase?",
        "A pipeline failed, with error details.",
    ),
    _m(
        "risk_identified",
        "pipelines",
        "pipeline_id risk_id title severity",
        "An agent identified a risk a person must acknowledge.",
    ),
    # clarifications
    _m(
        "clarification_requested",
        "agents",
        "clarification_id question choices? step_id? run_id? agent?",
        "An agent asked a person a question; its step waits.",
    ),
    _m(
        "clarification_answered",
        "agents",
        "clarification_id answer session_id? answered_by?",
        "A person answered; the step resumes.",
    ),
    # review
    _m(
        "waiting_for_review",
        "reviews",
        "pr number repository",
        "A pull request waits for its reviewers.",
    ),
    _m(
        "review_received",
        "reviews",
        "pr batch_id comments due_at?",
        "Review comments were gathered into a batch.",
    ),
    _m(
        "review_responded",
        "reviews",
        "pr batch_id outcomes commit? cost_usd? iteration? status?",
        "biagent answered a batch: replies posted, fixes pushed.",
    ),
    _m("pr_approved", "reviews", "pr reviewer", "A reviewer approved the pull request."),
    _m("changes_requested", "reviews", "pr reviewer batch_id?", "A reviewer requested changes."),
    # agent steps
    _m(
        "tool_call_started",
        "agents",
        "call_id tool arguments run_id? agent?",
        "An agent called a tool.",
    ),
    _m(
        "tool_call_completed",
        "agents",
        "call_id tool result duration_ms error? run_id?",
        "A tool call finished.",
    ),
    _m("file_changed", "agents", "path change_type run_id? call_id?", "An agent wrote a file."),
    _m("token", "agents", "seq text", "Streamed agent text, coalesced (not kept in events)."),
    _m(
        "agent_step_started",
        "agents",
        "run_id agent session_key restored?",
        "An agent step started, or continued its stored conversation.",
    ),
    _m(
        "agent_step_finished",
        "agents",
        "run_id agent status cost_usd session_key? step_cost_usd? reason? error?",
        "An agent step ended: completed, paused_for_clarification, budget_stopped, failed"
        " or interrupted.",
    ),
    _m(
        "agent_turn_interrupted",
        "agents",
        "run_id agent reason tool_use_started?",
        "A streamed turn broke; it was recorded and is asked again from the stored history.",
    ),
    # sessions
    _m(
        "session_restored",
        "sessions",
        "session_id last_event_id",
        "A status-page session was restored.",
    ),
    _m("offline_event", "sessions", "session_id event", "An event missed while offline."),
    _m(
        "token_catchup",
        "sessions",
        "stream from_seq text last_seq?",
        "Token text a reconnecting client missed.",
    ),
    # worktrees
    _m(
        "worktree_session_creating",
        "worktrees",
        "session_id repositories owner? branch?",
        "A worktree session is being created.",
    ),
    _m(
        "worktree_repo_created",
        "worktrees",
        "session_id repository path branch ports?",
        "A repository's worktree exists (locked, on its own branch, with a block of ports).",
    ),
    _m(
        "worktree_setup_started",
        "worktrees",
        "session_id repository command source? test_command?",
        "Setup began in a worktree (command empty: nothing to run).",
    ),
    _m(
        "worktree_session_ready",
        "worktrees",
        "session_id paths?",
        "A worktree session is ready.",
    ),
    _m(
        "pipeline_needs_input",
        "worktrees",
        "session_id question request_id? repository? choices?",
        "Setup needs a person's answer to go on.",
    ),
    _m(
        "worktree_session_cleaned",
        "worktrees",
        "session_id reason freed_bytes? kept_branches?",
        "A worktree session was removed.",
    ),
    _m(
        "worktree_status",
        "worktrees",
        "session_id status detail? repository?",
        "Progress of a worktree session: setup_output (streamed lines), copy_files,"
        " setup_done, setup_failed, failed.",
    ),
    _m(
        "user_input_request",
        "worktrees",
        "request_id question choices? repository? repository_id? session_id? answer_url?",
        "A person's input is requested.",
    ),
)

BY_NAME: dict[str, MessageType] = {message.name: message for message in CATALOGUE}


class UnknownMessageType(ValueError):
    """A type that is not in the catalogue."""


def check(type_name: str, data: dict[str, object]) -> MessageType:
    """The catalogue entry for `type_name`; raises when unknown or a required field is missing."""
    message = BY_NAME.get(type_name)
    if message is None:
        raise UnknownMessageType(f"{type_name!r} is not in bot/events/catalogue.py")
    missing = [name for name in message.required_fields if name not in data]
    if missing:
        raise ValueError(f"{type_name}: data lacks {', '.join(missing)}")
    return message
