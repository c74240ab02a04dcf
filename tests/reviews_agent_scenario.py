"""The review scenario with the real engine: the review_response agent on the real SDK against
the Anthropic fake, in a real worktree of a local bare repository standing for GitHub.

The pull request (tests/reviews_scenario.py's, from the real payloads) is pointed at the bare
repository: `head.repo.clone_url` and `base.repo.clone_url` are its `file://` URL, `head.ref` is
its `changes` branch, and the GitHub fake serves the head sha from it (`follow_git`), as GitHub
follows pushes. The bench (bench/review_latency.py) builds the same world.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.clock import ManualClock
from bot.config import Settings
from tests.conftest import StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic, ScriptItem
from tests.fakes.github import FakeGitHub
from tests.reviews_scenario import NUMBER, REPO, Scenario, review_settings
from tests.worktree_helpers import Remote, git, make_remote

TEST_COMMAND = "python3 -m unittest -q"
FILES = {
    "greet.py": 'def greet(name):\n    return "Hi " + name\n',
    "test_greet.py": (
        "import unittest\n\nfrom greet import greet\n\n\n"
        "class GreetTest(unittest.TestCase):\n"
        "    def test_greets_by_name(self):\n"
        '        self.assertIn("Ada", greet("Ada"))\n'
    ),
    "NOTES.md": "Notes\n",
    ".github/biagent.yml": f"setup: []\ntest: {TEST_COMMAND}\n",
}
HEAD_REF = "changes"


def make_pr_remote(base: Path) -> Remote:
    """A bare repository with `main` and the PR branch `changes` one commit ahead."""
    remote = make_remote(base, "hello-world", FILES)
    remote.commit({"greet.py": 'def greet(name):\n    return "Hello " + name\n'}, "Say hello",
                  branch=HEAD_REF)  # fmt: skip
    return remote


def push_as_someone_else(remote: Remote, files: dict[str, str], message: str) -> str:
    """A person pushes to the PR branch (from their own clone, up to date with the remote)."""
    git("fetch", "-q", "origin", cwd=remote.work)
    git("checkout", "-q", "-B", HEAD_REF, f"origin/{HEAD_REF}", cwd=remote.work)
    for name, text in files.items():
        (remote.work / name).write_text(text, encoding="utf-8")
    git("add", "-A", cwd=remote.work)
    git("commit", "-q", "-m", message, cwd=remote.work)
    git("push", "-q", "origin", f"{HEAD_REF}:{HEAD_REF}", cwd=remote.work)
    return git("rev-parse", "HEAD", cwd=remote.work)


def agent_settings(
    tmp_path: Path, fake: FakeGitHub, app_key: tuple[str, str], model: FakeAnthropic, **more: Any
) -> Settings:
    return dataclasses.replace(
        review_settings(tmp_path, fake, app_key),
        anthropic_configured=True,
        anthropic_base_url=model.base_url,
        worktree_spares=0,
        **more,
    )


class AgentScenario(Scenario):
    def __init__(
        self,
        *,
        start_app: StartApp,
        settings: Settings,
        fake: FakeGitHub,
        clock: ManualClock,
        model: FakeAnthropic,
        remote: Remote,
    ) -> None:
        super().__init__(
            start_app=start_app,
            settings=settings,
            fake=fake,
            clock=clock,
            engine=None,  # type: ignore[arg-type]  # the app wires the agent engine itself
        )
        self.model = model
        self.remote = remote
        self.start_sha = remote.sha(HEAD_REF)
        self.repository["clone_url"] = remote.url
        head, base = self.pull_request["head"], self.pull_request["base"]
        head.update({"ref": HEAD_REF, "sha": self.start_sha})
        head["repo"]["clone_url"] = remote.url
        base["ref"] = "main"
        base["repo"]["clone_url"] = remote.url
        fake.add_pull_request(REPO, self.pull_request)
        fake.follow_git(REPO, NUMBER, remote.bare)

    # -- what the remote holds --------------------------------------------------------

    def head(self) -> str:
        return self.remote.sha(HEAD_REF)

    def commits_since_start(self) -> list[str]:
        """Subjects of the commits on the PR branch after the one the run started from."""
        log = git("log", "--format=%s", f"{self.start_sha}..{HEAD_REF}", cwd=self.remote.bare)
        return log.splitlines()

    def message(self, ref: str) -> str:
        return git("log", "-1", "--format=%B", ref, cwd=self.remote.bare)

    def file_at_head(self, path: str) -> str:
        return git("show", f"{HEAD_REF}:{path}", cwd=self.remote.bare)


async def open_scenario(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    manual_clock: ManualClock,
    model: FakeAnthropic,
    *,
    prepare: Callable[[Remote], object] | None = None,
    **settings: Any,
) -> AgentScenario:
    """The app started with the agent engine and biagent's pull request opened; `prepare`
    adds to the remote first (more commits on the PR branch)."""
    remote = make_pr_remote(tmp_path)
    if prepare is not None:
        prepare(remote)
    scenario = AgentScenario(
        start_app=start_app,
        settings=agent_settings(tmp_path, fake_github, app_key, model, **settings),
        fake=fake_github,
        clock=manual_clock,
        model=model,
        remote=remote,
    )
    await scenario.start()
    await scenario.send("pull_request", scenario.opened())
    return scenario


def replies_by_comment(scenario: Scenario) -> dict[int, str]:
    """biagent's thread replies, by the comment they answer."""
    return {reply["in_reply_to_id"]: reply["body"] for reply in scenario.replies()}


# -- scripted model turns -------------------------------------------------------------------


def report(outcomes: list[tuple[int, str, str]], summary: str = "Greet politely") -> ScriptItem:
    return scripted.tool_use(
        "report_output",
        {
            "outcomes": [
                {"comment_id": comment_id, "outcome": outcome, "explanation": explanation}
                for comment_id, outcome, explanation in outcomes
            ],
            "summary": summary,
        },
    )


def edit_greeting(new: str = "Hello, ") -> ScriptItem:
    return scripted.tool_use(
        "edit_file", {"path": "greet.py", "old_text": '"Hello "', "new_text": json.dumps(new)}
    )


def run_tests() -> ScriptItem:
    return scripted.tool_use("bash", {"command": TEST_COMMAND})


def fix_and_report(outcomes: list[tuple[int, str, str]]) -> list[ScriptItem]:
    """Edit a file, run the tests, report, end the turn: a whole review_response step."""
    return [edit_greeting(), run_tests(), report(outcomes), scripted.text("Done.")]
