"""Real git for the worktree tests: bare repositories on disk stand in for GitHub remotes."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.clock import ManualClock
from bot.events.bus import EventBus
from bot.worktrees.manager import WorktreeManager, WorktreeOptions
from bot.worktrees.records import SessionView
from storage import events as event_store
from storage import repositories as repository_store
from storage.database import Database
from storage.repositories import Repository
from tests.helpers import auth_headers
from web.keys import SERVICES

GIT_ENV = {
    **{name: value for name, value in os.environ.items() if not name.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def git(*args: str, cwd: Path, input_text: str | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=GIT_ENV,
        check=True,
        capture_output=True,
        text=True,
        input=input_text,
    )
    return done.stdout.strip()


@dataclass
class Remote:
    """A bare repository standing for GitHub, and a working clone to push new commits from."""

    bare: Path
    work: Path

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, files: dict[str, str], message: str = "change", branch: str = "main") -> str:
        git("checkout", "-q", "-B", branch, cwd=self.work)
        for name, text in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"{branch}:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def sha(self, ref: str) -> str:
        return git("rev-parse", ref, cwd=self.bare)

    def branches(self) -> set[str]:
        return set(
            git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.bare).split()
        )


def make_remote(base: Path, name: str, files: dict[str, str]) -> Remote:
    bare = base / "remotes" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=base)
    work = base / "seeds" / name
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    remote = Remote(bare, work)
    remote.commit({".gitignore": ".env\n.venv/\nbuilt.txt\n", **files}, "initial")
    return remote


@dataclass
class World:
    db: Database
    bus: EventBus
    clock: ManualClock
    manager: WorktreeManager
    base: Path

    async def register(self, full_name: str, remote: Remote, **kwargs: Any) -> Repository:
        return await repository_store.upsert(
            self.db, full_name=full_name, clone_url=remote.url, now=self.clock.now(), **kwargs
        )

    async def events(self, type_name: str | None = None) -> list[dict[str, Any]]:
        stored = await event_store.read_since(self.db, 0, limit=100_000)
        return [
            {"type": event.type, "stream": event.stream, **event.data}
            for event in stored
            if type_name is None or event.type == type_name
        ]


# What the tests pass to the manager itself; every other option is a WorktreeOptions field.
MANAGER_ARGUMENTS = ("detector", "token_source", "pull_request_state", "new_id")


def manager_arguments(base: Path, given: dict[str, Any]) -> dict[str, Any]:
    """WorktreeManager's arguments for a test: short timeouts, no spares unless asked for."""
    options: dict[str, Any] = {
        "root": base / "wt",
        "setup_timeout_s": 30.0,
        "input_timeout_s": 10.0,
        "spares_per_repository": 0,
    }
    options.update({name: value for name, value in given.items() if name not in MANAGER_ARGUMENTS})
    if "hidden_paths" in options:
        options["hidden_paths"] = tuple(options["hidden_paths"])
    arguments = {name: value for name, value in given.items() if name in MANAGER_ARGUMENTS}
    return {"options": WorktreeOptions(**options), **arguments}


async def open_world(base: Path, **manager_options: Any) -> AsyncIterator[World]:
    db = await Database.open(f"sqlite:///{base / 'biagent.db'}")
    await db.migrate()
    clock = ManualClock()
    bus = EventBus(db, clock)
    await bus.start()
    manager = WorktreeManager(
        db=db, bus=bus, clock=clock, **manager_arguments(base, manager_options)
    )
    try:
        yield World(db, bus, clock, manager, base)
    finally:
        await db.close()


async def wait_until(
    condition: Callable[[], object], *, what: str, timeout_s: float = 30.0
) -> None:
    """Poll `condition` until it holds; fail naming `what` when it has not by the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def lock_released(path: Path) -> bool:
    """True once no process holds an flock on `path` (a command holds one for as long as it
    or any process it started lives)."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


async def live_session(client: Any, base: Path, owner: str = "PROJ-2") -> SessionView:
    """In the running app: `octo/app` (a bare remote with a Makefile setup) registered through
    the API, and a ready worktree session of it for `owner`."""
    remote = make_remote(base, "octo/app", {"Makefile": "setup:\n\ttrue\n"})
    response = await client.post(
        "/api/repositories",
        json={"full_name": "octo/app", "clone_url": remote.url},
        headers=auth_headers(),
    )
    assert response.status in (200, 201), await response.text()
    services = client.app[SERVICES]
    repository = await repository_store.get(
        services.db, (await response.json())["repository"]["id"]
    )
    assert repository is not None and services.worktrees is not None
    return await services.worktrees.create_session(owner, [repository])


# The fixtures below are registered as `world` and `remote` by importing them into a test module.
SETUP_YML = "setup: echo built > built.txt && echo PORT=$PORT && echo line2\ntest: make test\n"


@pytest.fixture(name="world")
async def world_fixture(tmp_path: Path) -> AsyncIterator[World]:
    async for opened in open_world(tmp_path):
        yield opened


@pytest.fixture(name="remote")
def remote_fixture(tmp_path: Path) -> Remote:
    return make_remote(
        tmp_path, "octo/app", {".github/biagent.yml": SETUP_YML, "src/app.py": "print(1)\n"}
    )
