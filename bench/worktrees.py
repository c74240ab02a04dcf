"""Time to a ready worktree from a warm mirror, beside a fresh `git clone`, in the same run.

A synthetic repository of 5,000 files (a few KB each, in nested packages, with some history)
lives in a local bare repository standing for GitHub. The project side is
`WorktreeManager.create_session` with its setup (none to run) and everything it records: the
mirror is already cloned, so it fetches (nothing new), takes the spare worktree checked out
ahead of time (WORKTREE_SPARES=1), moves it into place and switches it to the job's branch,
checks the setup, measures the size, writes its rows and publishes its events. The spare is
refilled in the background after each hand-out; the bench waits for that refill between jobs
(off the job's clock) and reports it, and also times the path without a spare (a plain
`git worktree add` from the warm mirror). The baseline is what a tool without a mirror does for
each job: `git clone` of the same repository into a fresh directory. Each runs `--runs` times;
medians are compared. Target: ratio <= 0.2.

    .venv/bin/python -m bench.worktrees [--files 5000] [--commits 30] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot.clock import SystemClock
from bot.events.bus import EventBus
from bot.worktrees.manager import WorktreeManager
from storage import repositories as repository_store
from storage.database import Database

TARGET_RATIO = 0.2
GIT_IDENTITY = [
    "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "gc.auto=0",
]  # fmt: skip


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout


def source_text(rng: random.Random, index: int, revision: int) -> str:
    lines = [f'"""Module {index}, revision {revision}."""', ""]
    for function in range(rng.randint(6, 14)):
        name = f"f_{index}_{function}"
        lines += [
            f"def {name}(value: int) -> int:",
            f"    total = value * {rng.randint(2, 999)}",
            f"    for step in range({rng.randint(3, 50)}):",
            f"        total = (total + step * {rng.randint(1, 97)}) % {rng.randint(1000, 99999)}",
            "    return total",
            "",
        ]
    return "\n".join(lines) + "\n"


def build_remote(base: Path, files: int, commits: int) -> Path:
    """A bare repository of `files` files whose last `commits` commits each touch some."""
    rng = random.Random(5000)
    work = base / "seed"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    paths = [Path(f"pkg{i % 50:02d}/sub{i % 7}/module_{i:05d}.py") for i in range(files - 1)]
    for index, path in enumerate(paths):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(source_text(rng, index, 0))
    (work / ".github").mkdir()
    (work / ".github/biagent.yml").write_text("setup: []\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial import", cwd=work)
    for revision in range(1, commits + 1):
        for index in rng.sample(range(len(paths)), 100):
            (work / paths[index]).write_text(source_text(rng, index, revision))
        git("commit", "-q", "-am", f"revision {revision}", cwd=work)
    bare = base / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=base)
    git("gc", "-q", cwd=bare)
    return bare


async def time_worktrees(
    base: Path, url: str, runs: int, *, spares: int
) -> tuple[list[float], list[float]]:
    """(time to a ready session, time to refill the spare after it) for each run."""
    db = await Database.open(f"sqlite:///{base / f'bench-{spares}.db'}")
    await db.migrate()
    clock = SystemClock()
    bus = EventBus(db, clock)
    await bus.start()
    manager = WorktreeManager(
        db=db, bus=bus, clock=clock, root=base / f"worktrees-{spares}",
        spares_per_repository=spares,
    )  # fmt: skip
    try:
        repository = await repository_store.upsert(
            db, full_name="bench/repo", clone_url=url, now=clock.now()
        )
        await manager.ensure_mirror(repository)  # warm: the one clone of the mirror's life
        if spares:
            await manager.prepare_spares(repository)
        timings, refills = [], []
        for run in range(runs):
            started = time.perf_counter()
            view = await manager.create_session(f"BENCH-{run}", [repository])
            timings.append(time.perf_counter() - started)
            assert view.status == "ready", view.session.error
            if spares:
                started = time.perf_counter()
                await manager.spares_ready(repository)
                refills.append(time.perf_counter() - started)
        return timings, refills
    finally:
        await manager.close()
        await db.close()


def time_clones(base: Path, url: str, runs: int) -> list[float]:
    timings = []
    for run in range(runs):
        target = base / "clones" / f"clone-{run}"
        started = time.perf_counter()
        subprocess.run(["git", "clone", "-q", url, str(target)], check=True)
        timings.append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-worktrees-"))
    try:
        built = time.perf_counter()
        bare = build_remote(base, args.files, args.commits)
        url = f"file://{bare}"
        print(
            f"repository: {args.files} files, {args.commits + 1} commits,"
            f" {sum(p.stat().st_size for p in bare.rglob('*') if p.is_file()) / 1e6:.1f} MB"
            f" packed (built in {time.perf_counter() - built:.1f}s)"
        )
        worktree_runs, refill_runs = asyncio.run(time_worktrees(base, url, args.runs, spares=1))
        plain_runs, _ = asyncio.run(time_worktrees(base, url, args.runs, spares=0))
        clone_runs = time_clones(base, url, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    worktree_s = statistics.median(worktree_runs)
    clone_s = statistics.median(clone_runs)
    ratio = worktree_s / clone_s
    plain_s = statistics.median(plain_runs)
    refill_s = statistics.median(refill_runs)
    print(f"ready worktree, warm mirror + spare:  median {worktree_s * 1000:6.0f} ms")
    print(f"  background refill of the spare:     median {refill_s * 1000:6.0f} ms (off the job)")
    print(f"ready worktree, warm mirror, no spare: median {plain_s * 1000:6.0f} ms")
    print(f"fresh git clone (baseline):            median {clone_s * 1000:6.0f} ms")
    print(
        f"ratio {ratio:.3f} (target <= {TARGET_RATIO}); without a spare"
        f" {plain_s / clone_s:.3f}; {args.runs} runs each"
    )
    print(
        json.dumps(
            {
                "bench": "worktrees",
                "ratio": round(ratio, 4),
                "target": TARGET_RATIO,
                "worktree_s": round(worktree_s, 4),
                "clone_s": round(clone_s, 4),
                "no_spare_s": round(plain_s, 4),
                "no_spare_ratio": round(plain_s / clone_s, 4),
                "refill_s": round(refill_s, 4),
                "files": args.files,
                "runs": args.runs,
                "ok": ratio <= TARGET_RATIO,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
