"""The envelope of a GitHub delivery: the fields the routers and their handlers rely on, typed.

POST /webhooks/github decodes a delivery's body into its event's envelope before storing it
(docs/design.md, Data flow of a webhook), so a delivery that no handler could work is refused
with 400 naming the field, instead of being accepted and then failing in the dispatcher. The
dispatcher checks stored payloads against the same envelopes (a delivery stored before a check
existed, or redelivered) and rejects one that does not fit, without running a handler.

One Struct per event that a concern handles (bot/routers.py), with the fields its handlers read:
required where a handler indexes them (`event.data["comment"]`), optional where it falls back
(`.get("sender") or {}`), and typed where a value reaches a column or an `int()`. Every other
field is skipped unread (msgspec does that in C, without building it). Events no concern handles
get the common envelope only: `action` a string when present, and `repository` and `sender` of
the right shape when present. `installation.id` is required, an id, where the handlers need it
(the installation events); elsewhere an installation that is not one GitHub would send is kept
as none, and the review handlers then leave the delivery alone.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# GitHub ids are positive; SQLite's INTEGER stops at 2**63 - 1.
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Part(msgspec.Struct, kw_only=True):
    """A nested object of a payload: unknown fields are skipped."""


class Account(_Part):
    """A user, bot or organisation (`sender`, `user`, `installation.account`)."""

    login: str = ""
    type: str | None = None


class App(_Part):
    """`performed_via_github_app` and `check_run.app`: compared by id."""

    id: Id | None = None


class Installation(_Part):
    id: Id
    account: Account | None = None
    target_type: str | None = None


class Repository(_Part):
    full_name: str
    clone_url: str | None = None


class GrantedRepository(_Part):
    """One repository an installation grants (`repositories`, `repositories_added`...)."""

    id: Id
    full_name: str
    private: bool | None = None


class Branch(_Part):
    """A pull request's `head` or `base`."""

    ref: str
    sha: str
    repo: Repository | None = None


class PullRequest(_Part):
    number: Id
    head: Branch
    base: Branch
    id: Id | None = None
    state: str | None = None
    merged: bool | None = None
    merged_at: str | None = None
    title: str | None = None
    user: Account | None = None


class _Written(_Part):
    """What a comment and a review share: who wrote it, and the body biagent reads."""

    id: Id
    body: str | None = None
    user: Account | None = None
    performed_via_github_app: App | None = None
    html_url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class IssueComment(_Written):
    pass


class ReviewComment(_Written):
    pull_request_review_id: Id | None = None
    in_reply_to_id: Id | None = None
    path: str | None = None
    line: Count | None = None
    original_line: Count | None = None
    start_line: Count | None = None
    side: str | None = None
    diff_hunk: str | None = None
    commit_id: str | None = None


class Review(_Written):
    state: str | None = None
    commit_id: str | None = None
    submitted_at: str | None = None


class Issue(_Part):
    """An `issue_comment`'s issue: a pull request when it has a `pull_request` key."""

    number: Id | None = None
    pull_request: dict[str, Any] | None = None


class ThreadComment(_Part):
    id: Id


class Thread(_Part):
    comments: list[ThreadComment] | None = None


class CheckRun(_Part):
    id: Id
    name: str | None = None
    app: App | None = None


class RequestedAction(_Part):
    identifier: str | None = None


class Envelope(_Part):
    """What every GitHub delivery must fit, and all an event no concern handles must. Its
    installation is read leniently (`installation_id`): only the installation events need one."""

    action: str | None = None
    installation: Any = None
    sender: Account | None = None
    repository: Repository | None = None


class PingEnvelope(Envelope, kw_only=True):
    hook: dict[str, Any] | None = None


class InstallationEnvelope(Envelope, kw_only=True):
    action: str
    installation: Installation
    repositories: list[GrantedRepository] | None = None


class InstallationRepositoriesEnvelope(Envelope, kw_only=True):
    action: str
    installation: Installation
    repositories_added: list[GrantedRepository] | None = None
    repositories_removed: list[GrantedRepository] | None = None


class _RepositoryEnvelope(Envelope, kw_only=True):
    repository: Repository


class PullRequestEnvelope(_RepositoryEnvelope, kw_only=True):
    pull_request: PullRequest
    after: str | None = None


class ReviewCommentEnvelope(_RepositoryEnvelope, kw_only=True):
    pull_request: PullRequest
    comment: ReviewComment


class IssueCommentEnvelope(_RepositoryEnvelope, kw_only=True):
    issue: Issue | None = None
    comment: IssueComment


class ReviewEnvelope(_RepositoryEnvelope, kw_only=True):
    pull_request: PullRequest
    review: Review


class ReviewThreadEnvelope(_RepositoryEnvelope, kw_only=True):
    pull_request: PullRequest
    thread: Thread | None = None


class CheckRunEnvelope(_RepositoryEnvelope, kw_only=True):
    check_run: CheckRun
    requested_action: RequestedAction | None = None


ENVELOPES: dict[str, type[Envelope]] = {
    "ping": PingEnvelope,
    "installation": InstallationEnvelope,
    "installation_repositories": InstallationRepositoriesEnvelope,
    "pull_request": PullRequestEnvelope,
    "pull_request_review_comment": ReviewCommentEnvelope,
    "issue_comment": IssueCommentEnvelope,
    "pull_request_review": ReviewEnvelope,
    "pull_request_review_thread": ReviewThreadEnvelope,
    "check_run": CheckRunEnvelope,
}


def envelope_for(event: str) -> type[Envelope]:
    """The envelope a delivery of `event` must fit (X-GitHub-Event)."""
    return ENVELOPES.get(event, Envelope)


def installation_id(envelope: Envelope) -> int | None:
    """The delivery's installation; None without one GitHub would send (a bool, a float, a
    number out of range) on an event that does not need it."""
    installation = envelope.installation
    if isinstance(installation, Installation):
        return installation.id
    found = installation.get("id") if isinstance(installation, dict) else None
    return found if type(found) is int and 0 < found < 2**63 else None


def check_payload(event: str, payload: dict[str, Any]) -> Envelope:
    """A decoded payload as its event's envelope; msgspec.ValidationError naming the field
    (`... - at $.comment.id`) when it does not fit."""
    checked: Envelope = msgspec.convert(payload, envelope_for(event), strict=True)
    return checked
