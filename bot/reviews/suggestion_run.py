"""The suggestions of a batch, committed without a model: the first step of a run in its worktree.

`AgentRun.work` (agent_run.py) calls `SuggestionStep.apply` before any agent. Each diff comment
whose body holds one ```suggestion block is placed from GitHub's own JSON of the comment
(`GET .../pulls/comments/{id}`: its lines, side, commit and author), its lines are carried from
that commit onto the worktree's head (suggestions.py), and the block replaces them. What cannot
be applied as written (lines that changed, removed lines, several blocks, a comment on the whole
file, two suggestions on the same lines) is handed to the agent with the reason.

The applied ones become one commit, `Apply suggestions from code review` with a
`Co-authored-by: login <id+login@users.noreply.github.com>` trailer per reviewer, as GitHub
writes it, and biagent's `Biagent-Batch` and `Biagent-Suggestions` (the comment ids) trailers.
The tests run on it and it is pushed with the lease, as the agent's commit is, before the agent
starts on the rest: an agent that fails or stops at its budget cannot take the suggestions with
it. Called again for the same batch (a stop anywhere), the step finds its commit on the branch
(pushed) or on the worktree (not yet) by those trailers and never applies anything twice.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gidgethub
import msgspec
from gidgethub.abc import GitHubAPI

from bot.gitops.runner import run_git
from bot.reviews.agent_texts import TRAILER
from bot.reviews.engine import (
    BatchComment,
    CommentOutcome,
    EngineResult,
    EngineStatus,
    OutcomeKind,
)
from bot.reviews.states import Answer
from bot.reviews.suggestions import (
    Author,
    CommentPosition,
    Place,
    Suggestion,
    Unapplicable,
    apply_suggestion,
    carry_range,
    find_suggestion,
    lines_of,
    overlapping,
    parse_hunks,
    place_of,
    reads_as_suggested,
)
from bot.worktrees.files import tracked_changes

if TYPE_CHECKING:
    from bot.reviews.agent_run import AgentRun

log = logging.getLogger(__name__)

SUBJECT = "Apply suggestions from code review"
SUGGESTIONS_TRAILER = "Biagent-Suggestions"
APPLIED_NOTE = "Applied the suggestion as written."
REGULAR_FILE_MODES = ("100644", "100755")
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
UNCHANGED_ASK = "what it asks is in its words"
UNCHANGED = f"applying its block changes nothing in the file: {UNCHANGED_ASK}"
DIFF = ("diff", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames", "--unified=0")


class AlreadyApplied(Unapplicable):
    """The head reads as the suggestion would make it: someone committed it already."""


@dataclass(frozen=True, slots=True)
class Planned:
    """A suggestion that applies: its lines `first`..`last` on the head."""

    comment_id: int
    path: str
    first: int
    last: int
    suggestion: Suggestion
    author: Author | None
    login: str


@dataclass(frozen=True, slots=True)
class SuggestionsDone:
    """What the step did: the comments applied in `commit_sha`, and why the others were not."""

    applied: tuple[int, ...] = ()
    commit_sha: str | None = None
    tests_summary: str | None = None
    handed: dict[int, str] = field(default_factory=dict)  # to the agent, with why
    already: dict[int, str] = field(default_factory=dict)  # in place already: not changed

    @property
    def settled(self) -> set[int]:
        """The comments this step answers (the agent gets the others)."""
        return set(self.applied) | set(self.already)

    def outcomes(self) -> tuple[CommentOutcome, ...]:
        fixed = tuple(
            CommentOutcome(
                comment_id,
                OutcomeKind.FIXED,
                commit_sha=self.commit_sha,
                note=APPLIED_NOTE,
                comment_kind="review_comment",
                suggestion=True,
            )
            for comment_id in self.applied
        )
        return fixed + tuple(
            CommentOutcome(
                comment_id,
                OutcomeKind.DECLINED,
                reason=why,
                comment_kind="review_comment",
                suggestion=True,
            )
            for comment_id, why in self.already.items()
        )

    def result(self) -> EngineResult:
        """Every comment was a suggestion settled here: the run is complete, and cost nothing."""
        return EngineResult(
            EngineStatus.COMPLETED,
            self.outcomes(),
            commit_sha=self.commit_sha,
            tests_summary=self.tests_summary or "no changes, tests not run",
        )

    def merged(self, agent: EngineResult) -> EngineResult:
        """The agent's result on the rest, with the suggestions' outcomes first."""
        if not self.settled:
            return agent
        theirs = tuple(
            outcome
            for outcome in agent.outcomes
            if not (
                outcome.comment_id in self.settled
                and outcome.comment_kind in (None, "review_comment")
            )
        )
        tests = agent.tests_summary if agent.commit_sha else self.tests_summary
        return dataclasses.replace(
            agent,
            outcomes=self.outcomes() + theirs,
            commit_sha=agent.commit_sha or self.commit_sha,
            tests_summary=tests or agent.tests_summary,
        )


def _answered_before(comment: BatchComment) -> bool:
    return any(
        answer.comment_id == comment.comment_id and answer.outcome != Answer.NOT_ADDRESSED
        for answer in comment.earlier
    )


def co_author(author: Author | None, login: str) -> str:
    """GitHub's trailer for a person: the no-reply address with the account id, when known."""
    if author is None:
        return f"Co-authored-by: {login} <{login}@users.noreply.github.com>"
    return f"Co-authored-by: {author.login} <{author.id}+{author.login}@users.noreply.github.com>"


def commit_message(batch_id: int, planned: list[Planned]) -> str:
    """GitHub's subject for applied suggestions, one `Co-authored-by` per reviewer, and
    biagent's trailers naming the batch and the comments (how a stopped run finds it)."""
    trailers = []
    for item in planned:
        line = co_author(item.author, item.login)
        if line not in trailers:
            trailers.append(line)
    ids = ", ".join(str(item.comment_id) for item in planned)
    trailers += [f"{TRAILER}: {batch_id}", f"{SUGGESTIONS_TRAILER}: {ids}"]
    return "\n".join([SUBJECT, "", *trailers])


def applied_ids(message: str, batch_id: int) -> tuple[int, ...] | None:
    """The comment ids a commit message says this batch's suggestion commit applied; None
    when it is not that commit."""
    lines = message.splitlines()
    if f"{TRAILER}: {batch_id}" not in lines:
        return None
    prefix = f"{SUGGESTIONS_TRAILER}: "
    for line in lines:
        if line.startswith(prefix):
            parts = (part.strip() for part in line[len(prefix) :].split(","))
            return tuple(int(part) for part in parts if part.isdigit())
    return None


async def already_applied(
    worktree: Path, place: Place, written_on: str, head: str, suggestion: Suggestion
) -> bool:
    """Whether the head already reads as the suggestion would make the file (someone committed
    it: GitHub's own button, by hand, an earlier batch). Git aligns the two texts (the
    suggested one stored as a blob), in its own process: never a diff on the event loop."""
    suggested = apply_suggestion(written_on, place.first, place.last, suggestion)
    if suggested == head:
        return True
    if not suggestion.lines:
        return False
    with tempfile.TemporaryFile() as text:
        text.write(suggested.encode("utf-8"))
        text.seek(0)
        stored = await run_git(
            "hash-object", "-w", "--no-filters", "--stdin", cwd=worktree, stdin=text
        )
    diff = await run_git(*DIFF, stored.stdout.strip(), f"HEAD:{place.path}", cwd=worktree)
    return reads_as_suggested(head, parse_hunks(diff.stdout), place.first, suggestion)


class SuggestionStep:
    """One batch's suggestions in the run's worktree."""

    def __init__(self, run: AgentRun, test_command: str | None) -> None:
        self.run = run
        self.test_command = test_command
        self.batch_id = run.batch.batch_id

    def candidates(self) -> list[tuple[BatchComment, Suggestion | Unapplicable]]:
        """The diff comments holding a suggestion block. One biagent answered before and that
        is back (its thread reopened, a retry) is the agent's to look at again, with what it
        answered then: applying the block again would only repeat that answer."""
        found = []
        for comment in self.run.batch.comments:
            if comment.kind != "review_comment" or _answered_before(comment):
                continue
            suggestion = find_suggestion(comment.body)
            if suggestion is not None:
                found.append((comment, suggestion))
        return found

    async def apply(self) -> SuggestionsDone:
        """The batch's suggestions committed, tested and pushed (or found so after a stop), and
        why the others were left to the agent. When someone else's conflicting commits refuse
        the push, it plans again on their head: `restarts + 2` attempts in all."""
        candidates = self.candidates()
        if not candidates:
            return SuggestionsDone()
        for _ in range(self.run.engine.restarts + 2):
            earlier = await self.earlier_commit()
            if earlier is None:
                planned, left = await self.plan(candidates)
                if not planned:
                    return left
                if not await self.commit(planned):
                    for item in planned:
                        left.handed[item.comment_id] = UNCHANGED
                    return left
                earlier = await self.earlier_commit()
                if earlier is None:
                    raise self.run.stopped("the suggestions' commit is not on the worktree")
            else:
                left = await self.left_before(earlier, candidates)
            done = await self.push(earlier, left)
            if done is not None:
                return done
        raise self.run.stopped(
            "the branch moved and the suggestions conflicted with the new commits each time"
        )

    # -- the commit, found or made ------------------------------------------------------------

    async def earlier_commit(self) -> tuple[str, tuple[int, ...]] | None:
        """This batch's suggestion commit among the worktree's last commits, with its ids."""
        log_text = await self.run.git("log", "-n", "50", "--format=%H%x1f%B%x1e", "HEAD")
        for entry in log_text.split("\x1e"):
            sha, _, message = entry.strip().partition("\x1f")
            ids = applied_ids(message, self.batch_id)
            if ids is not None:
                return sha, ids
        return None

    async def left_before(
        self,
        earlier: tuple[str, tuple[int, ...]],
        candidates: list[tuple[BatchComment, Suggestion | Unapplicable]],
    ) -> SuggestionsDone:
        """Why the suggestions the found commit did not apply were left: planned again on
        the head, which holds that commit (so they cannot apply now either)."""
        sha, ids = earlier
        others = [
            (comment, parsed) for comment, parsed in candidates if comment.comment_id not in ids
        ]
        planned, left = await self.plan(others)
        for item in planned:  # not expected: they did not apply before
            left.handed[item.comment_id] = f"it was not applied with the others in {sha[:7]}"
        return left

    async def push(
        self, earlier: tuple[str, tuple[int, ...]], left: SuggestionsDone
    ) -> SuggestionsDone | None:
        """Tests and push (with the lease) unless the commit is on the branch already; None when
        someone else's push conflicted with it (the worktree is then on their head)."""
        sha, ids = earlier
        recorded = (await self.run.row()).recorded_sha or ""
        every_comment = len(ids) + len(left.already) == len(self.run.batch.comments)
        if await self.is_ancestor(sha, recorded):
            tests = await self.run.run_tests(self.test_command) if every_comment else None
            return SuggestionsDone(ids, sha, tests, left.handed, left.already)
        tests = await self.run.run_tests(self.test_command)
        pushed = await self.run.push(self.test_command)
        if pushed is None:
            return None
        pushed_sha, replayed_tests = pushed
        log.info("%s: suggestions %s applied in %s", self.run.stream, ids, pushed_sha[:12])
        return SuggestionsDone(ids, pushed_sha, replayed_tests or tests, left.handed, left.already)

    async def is_ancestor(self, sha: str, of: str) -> bool:
        """Whether commit `sha` is on `of` (an empty `of`: no, nothing is recorded yet)."""
        if not of:
            return False
        check = await run_git(
            "merge-base", "--is-ancestor", sha, of, cwd=self.run.worktree, check=False
        )
        return check.returncode == 0

    async def commit(self, planned: list[Planned]) -> bool:
        """The planned suggestions written and committed on the worktree; False, with nothing
        committed, when writing them changes no byte (git would refuse an empty commit)."""
        worktree = self.run.worktree
        if await tracked_changes(worktree):
            await self.run.discard()  # left by something else: the plan was made on HEAD
        paths = sorted({item.path for item in planned})
        for path in paths:
            text = await self.blob("HEAD", path)
            for item in sorted(
                (p for p in planned if p.path == path), key=lambda p: p.first, reverse=True
            ):
                text = apply_suggestion(text, item.first, item.last, item.suggestion)
            (worktree / path).write_bytes(text.encode("utf-8"))
        await self.run.git("--literal-pathspecs", "add", "--", *paths)
        staged = await run_git("diff", "--cached", "--quiet", cwd=worktree, check=False)
        if staged.returncode == 0:
            return False
        message = commit_message(self.batch_id, planned)
        await self.run.git("commit", "--quiet", "--no-verify", "-m", message)
        return True

    # -- the plan ---------------------------------------------------------------------------

    async def plan(
        self, candidates: list[tuple[BatchComment, Suggestion | Unapplicable]]
    ) -> tuple[list[Planned], SuggestionsDone]:
        """The suggestions that apply on the head, and the others: in place already, or
        handed to the agent with why."""
        gh = self.run.engine.github_client(self.run.batch.installation_id)
        planned: list[Planned] = []
        handed: dict[int, str] = {}
        already: dict[int, str] = {}
        for comment, parsed in candidates:
            try:
                if isinstance(parsed, Unapplicable):
                    raise parsed
                item = await self.place(gh, comment, parsed)
                taken = [(p.first, p.last) for p in planned if p.path == item.path]
                if overlapping(taken, (item.first, item.last)):
                    raise Unapplicable("its lines overlap another suggestion of this batch")
            except AlreadyApplied as why:
                already[comment.comment_id] = str(why)
                continue
            except Unapplicable as why:
                handed[comment.comment_id] = str(why)
                continue
            planned.append(item)
        return planned, SuggestionsDone(handed=handed, already=already)

    async def place(self, gh: GitHubAPI, comment: BatchComment, suggestion: Suggestion) -> Planned:
        """Where the suggestion goes on the head; Unapplicable when it cannot go as written."""
        repository = self.run.batch.repository
        try:
            found = await gh.getitem(f"/repos/{repository}/pulls/comments/{comment.comment_id}")
        except gidgethub.BadRequest as error:
            if int(error.status_code) == 404:
                raise Unapplicable("the comment is gone on GitHub") from error
            raise
        try:
            position = msgspec.convert(found, CommentPosition)
        except msgspec.ValidationError as error:
            raise Unapplicable(f"GitHub's record of the comment is unexpected ({error})") from error
        place = place_of(position)
        if isinstance(place, Unapplicable):
            raise place
        if not await self.has_commit(place.commit):  # pushed after the worktree was fetched
            original = place_of(position, original=True)
            if isinstance(original, Place) and await self.has_commit(original.commit):
                place = original
        await self.regular_file(place.path)
        written_on = await self.blob(place.commit, place.path)
        head = await self.blob("HEAD", place.path)
        expected = lines_of(written_on, place.first, place.last)
        lines = f"lines {place.first}-{place.last} of {place.path}"
        if suggestion.lines == expected:
            raise Unapplicable(f"its block repeats {lines} unchanged: {UNCHANGED_ASK}")
        carried: tuple[int, int] | None = (place.first, place.last)
        if written_on != head:
            diff = await self.git_or_unapplicable(
                "--literal-pathspecs", *DIFF, place.commit, "HEAD", "--", place.path
            )
            carried = carry_range(parse_hunks(diff), place.first, place.last)
        if carried is None or lines_of(head, *carried) != expected:
            if await already_applied(self.run.worktree, place, written_on, head, suggestion):
                raise AlreadyApplied(
                    f"the branch already reads as this suggestion makes it ({lines} as of"
                    f" {place.commit[:7]}); nothing left to change"
                )
            raise Unapplicable(
                f"{lines} changed since {place.commit[:7]}, the commit it was written on"
            )
        return Planned(
            comment.comment_id, place.path, *carried, suggestion, position.user, comment.author
        )

    async def has_commit(self, sha: str) -> bool:
        """Whether the worktree's repository holds that commit (a sha GitHub gave)."""
        if not SHA.fullmatch(sha):
            return False
        shown = await run_git(
            "cat-file", "-e", f"{sha}^{{commit}}", cwd=self.run.worktree, check=False
        )
        return shown.returncode == 0

    async def regular_file(self, path: str) -> None:
        """Only a tracked regular file inside the worktree is written (never via a symlink)."""
        listed = await self.git_or_unapplicable(
            "--literal-pathspecs", "ls-tree", "HEAD", "--", path
        )
        mode = listed.split(" ", 1)[0] if listed else ""
        target = self.run.worktree / path
        inside = target.resolve().is_relative_to(self.run.worktree.resolve())
        if mode not in REGULAR_FILE_MODES or target.is_symlink() or not inside:
            raise Unapplicable(f"{path} is not a regular file on the head")

    async def git_or_unapplicable(self, *args: str) -> str:
        """A read-only git command on a path from GitHub; its failure (a path git refuses)
        hands the comment to the agent instead of failing the run."""
        output = await run_git(*args, cwd=self.run.worktree, check=False)
        if output.returncode != 0:
            raise Unapplicable(f"git could not read it ({output.stderr.strip()[-200:]})")
        return output.stdout

    async def blob(self, revision: str, path: str) -> str:
        """The file at `revision` as text; Unapplicable when it is missing there or is not
        UTF-8 text (invalid bytes, a NUL)."""
        shown = await run_git(
            "cat-file", "blob", f"{revision}:{path}", cwd=self.run.worktree, check=False
        )
        if shown.returncode != 0:
            if revision == "HEAD":
                raise Unapplicable(f"{path} is not on the head any more")
            raise Unapplicable(f"{path} at {revision[:7]} cannot be read (not on the branch)")
        try:
            text = shown.raw.decode("utf-8")  # strict: a U+FFFD the file holds is text
        except UnicodeDecodeError:
            raise Unapplicable(f"{path} is not UTF-8 text") from None
        if "\x00" in text:
            raise Unapplicable(f"{path} is not UTF-8 text")
        return text
