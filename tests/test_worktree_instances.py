"""Local disk across instances (docs/deploy.md): worktree sessions record their instance, and
each instance reuses, sweeps and reconciles its own alone; another instance's session is
absent on this disk, so a job moved here makes its worktree anew. Two managers on one database
with two roots stand for two machines; on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.events.bus import EventBus
from bot.worktrees.manager import WorktreeManager
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from tests.conftest import OpenDatabase
from tests.worktree_helpers import Remote, make_remote, manager_arguments

pytestmark = pytest.mark.both_databases

IDLE_TTL_S = 3600.0


@dataclass
class Machines:
    db: Database
    bus: EventBus
    clock: ManualClock
    a: WorktreeManager
    b: WorktreeManager
    repository: Repository
    remote: Remote


@pytest.fixture
async def machines(tmp_path: Path, open_database: OpenDatabase) -> AsyncIterator[Machines]:
    db = await open_database()
    clock = ManualClock()
    bus = EventBus(db, clock)
    await bus.start()

    def machine(name: str) -> WorktreeManager:
        arguments = manager_arguments(tmp_path / name, {"idle_ttl_s": IDLE_TTL_S})
        return WorktreeManager(db=db, bus=bus, clock=clock, instance_id=f"box-{name}", **arguments)

    remote = make_remote(tmp_path, "octo/app", {"app.py": "print(1)\n"})
    remote.commit({"feature.py": "one\n"}, "feature", branch="feature")
    repository = await repository_store.upsert(
        db, full_name="octo/app", clone_url=remote.url, now=clock.now()
    )
    a, b = machine("a"), machine("b")
    try:
        yield Machines(db, bus, clock, a, b, repository, remote)
    finally:
        await a.close()
        await b.close()


async def test_sweeps_leave_another_instances_worktrees(machines: Machines) -> None:
    theirs = await machines.a.create_session("PROJ-1", [machines.repository], run_setup=False)
    mine = await machines.b.create_session("PROJ-2", [machines.repository], run_setup=False)
    assert (theirs.session.instance_id, mine.session.instance_id) == ("box-a", "box-b")
    await machines.clock.advance(IDLE_TTL_S * 2)

    report = await machines.b.sweep()
    assert report["idle"] == [mine.id] and report["orphans"] == []
    kept = await worktree_store.get_session(machines.db, theirs.id)
    assert kept is not None and kept.status == theirs.status == "created"
    assert Path(theirs.repos[0].path).is_dir()
    assert not Path(mine.repos[0].path).exists()

    assert (await machines.a.sweep())["idle"] == [theirs.id]  # its own instance cleans it
    assert not Path(theirs.repos[0].path).exists()


async def test_another_instances_session_is_absent_here(machines: Machines) -> None:
    theirs = await machines.a.checkout_pull_request(
        machines.repository, pr_number=7, head_ref="feature", run_setup=False
    )
    assert await machines.b.get(theirs.id) is None
    assert (await machines.b.get(theirs.id, anywhere=True)) is not None
    assert [view.id for view in await machines.b.list_sessions()] == []
    listed = await machines.b.list_sessions(anywhere=True)
    assert [(view.id, view.session.instance_id) for view in listed] == [(theirs.id, "box-a")]

    # The review of PR 7 moved here (its instance died): a worktree of its own, made anew
    # from the mirror this disk fetches, not the other disk's session reused.
    moved = await machines.b.checkout_pull_request(
        machines.repository, pr_number=7, head_ref="feature", run_setup=False
    )
    assert moved.id != theirs.id and moved.session.instance_id == "box-b"
    assert moved.repos[0].recorded_sha == machines.remote.sha("feature")
    assert Path(moved.repos[0].path).is_relative_to(machines.b.root)
    again = await machines.a.checkout_pull_request(
        machines.repository, pr_number=7, head_ref="feature", run_setup=False
    )
    assert again.id == theirs.id  # each instance reuses its own


async def test_a_restart_under_a_new_identity_keeps_the_sessions_on_its_disk(
    machines: Machines, tmp_path: Path
) -> None:
    """The identity is new at each start by default: what is on this disk stays this disk's."""
    made = await machines.a.create_session("PROJ-3", [machines.repository], run_setup=False)
    await machines.b.reconcile()  # another machine: not on its disk, not taken
    assert (await worktree_store.get_session(machines.db, made.id)).instance_id == "box-a"  # type: ignore[union-attr]
    await machines.a.close()
    restarted = WorktreeManager(
        db=machines.db,
        bus=machines.bus,
        clock=machines.clock,
        instance_id="box-a-again",
        **manager_arguments(tmp_path / "a", {"idle_ttl_s": IDLE_TTL_S}),
    )
    try:
        await restarted.reconcile()
        view = await restarted.get(made.id)
        assert view is not None and view.status == "created"
        assert view.session.instance_id == "box-a-again" and Path(view.repos[0].path).is_dir()
    finally:
        await restarted.close()


async def test_sessions_from_before_instances_are_adopted_by_the_first_to_reconcile(
    machines: Machines,
) -> None:
    older = await worktree_store.create_session(
        machines.db,
        session_id="old1",
        owner="PROJ-9",
        branch="biagent/PROJ-9",
        stream="worktree:old1",
        now=machines.clock.now(),
    )
    assert older.instance_id is None
    await machines.b.reconcile()
    adopted = await worktree_store.get_session(machines.db, "old1")
    assert adopted is not None and adopted.instance_id == "box-b"
    await machines.a.reconcile()
    assert (await worktree_store.get_session(machines.db, "old1")).instance_id == "box-b"  # type: ignore[union-attr]
