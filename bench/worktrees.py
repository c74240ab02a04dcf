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

Every run of every path checks out 5,000 files, which on a loaded 2-core machine takes seconds:
the default of 2 runs keeps the whole bench under a minute there; `--runs 5` gives steadier
medians, `--files 20000` a larger repository.

    .venv/bin/python -m bench.worktrees [--files 5000] [--commits 30] [--runs 2]
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
from bot.worktrees.manager import WorktreeManager, WorktreeOptions
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
    """A bare repository of `files` files whose last `commits` commits each touch 100 of them.

    Written by one `git fast-import` stream rather than a work tree and a commit per revision:
    the same repository, built in a second or two instead of most of the bench's minute.
    """
    rng = random.Random(5000)
    paths = [f"pkg{i % 50:02d}/sub{i % 7}/module_{i:05d}.py" for i in range(files - 1)]
    stream = bytearray()

    def commit(number: int, message: str, changed: dict[str, str]) -> None:
        encoded = message.encode()
        stream.extend(
            b"commit refs/heads/main\n"
            b"committer bench <bench@localhost> %d +0000\n"
            b"data %d\n%s\n" % (1_700_000_000 + number, len(encoded), encoded)
        )
        for path, text in changed.items():
            content = text.encode()
            stream.extend(
                b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)
            )

    initial = {path: source_text(rng, index, 0) for index, path in enumerate(paths)}
    commit(0, "initial import", {**initial, ".github/biagent.yml": "setup: []\n"})
    for revision in range(1, commits + 1):
        touched = rng.sample(range(len(paths)), 100)
        commit(
            revision,
            f"revision {revision}",
            {paths[index]: source_text(rng, index, revision) for index in touched},
        )
    bare = base / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=base)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=bytes(stream), check=True)
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
    options = WorktreeOptions(root=base / f"worktrees-{spares}", spares_per_repository=spares)
    manager = WorktreeManager(db=db, bus=bus, clock=clock, options=options)
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
            # The refill after the last job would be cancelled at close: wait only when another
            # job follows, or when none has been measured yet.
            if spares and (run + 1 < runs or not refills):
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
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    bench_started = time.perf_counter()
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
    elapsed_s = time.perf_counter() - bench_started
    print(f"ready worktree, warm mirror + spare:  median {worktree_s * 1000:6.0f} ms")
    print(f"  background refill of the spare:     median {refill_s * 1000:6.0f} ms (off the job)")
    print(f"ready worktree, warm mirror, no spare: median {plain_s * 1000:6.0f} ms")
    print(f"fresh git clone (baseline):            median {clone_s * 1000:6.0f} ms")
    print(
        f"ratio {ratio:.3f} (target <= {TARGET_RATIO}); without a spare"
        f" {plain_s / clone_s:.3f}; {args.runs} runs each; whole bench {elapsed_s:.1f}s"
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
                "elapsed_s": round(elapsed_s, 1),
                "ok": ratio <= TARGET_RATIO,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
