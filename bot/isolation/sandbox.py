"""The sandboxed command runner: one way to run an untrusted command in a directory.

Worktree setup (bot/worktrees/), the review engine's test runs and the agents' bash tool run
commands that come from a repository or a model, so all go through `run_command`: a wall-clock
timeout that kills the whole process tree, an output cap (the head and the tail are kept, the
middle is cut), a scrubbed environment built from an allow-list (the service's own variables,
tokens and keys never reach the command), output streamed line by line to a callback, and, when
`bwrap` (bubblewrap) is installed, a mount/pid/ipc namespace: the file system is read-only
except the working directory and the paths the caller lists, chosen paths are hidden (the
database, the GitHub private key, other worktrees), /tmp is private, capabilities are dropped,
and the network can be switched off. Without bwrap the same limits apply except the namespaces;
the result says which one ran (`isolated`).

The two callers differ in three choices, all parameters here: what of the host is visible (setup:
the whole file system read-only; the agents' bash: only the system directories, `SYSTEM_PATHS`),
what happens at the output cap (setup: head and tail kept, the command runs on; the agents' bash:
the first bytes kept and the command stopped, `stop_at_cap`), and the network (setup: on; bash:
off). A `SandboxScope` carries what one workspace adds: its variables (ports, caches) and its
writable and hidden paths (WorktreeManager.command_sandbox builds it for a worktree).

A command that runs in a git worktree cannot steer biagent's own git afterwards nor touch the
shared mirror of a linked worktree: the git jail (bot/isolation/git_jail.py) decides what stays
read-only and, around each command, gives it an object directory of its own and takes its work
back in afterwards. What the command prints is kept and streamed by bot/isolation/output.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.isolation import git_jail
from bot.isolation.git_guard import LinkedGitDirs, guard_git_dirs
from bot.isolation.output import LineCallback, OutputCollector

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_OUTPUT_CAP_BYTES = 256 * 1024
KILL_GRACE_S = 2.0
READ_CHUNK = 64 * 1024

# Host variables a command may see; everything else (tokens, keys, our settings) is dropped.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# What a command sees of the host when the caller narrows it to the system (`visible_paths`).
SYSTEM_PATHS = tuple(
    Path(name) for name in ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin", "/etc", "/opt")
)
BASE_ENVIRONMENT = {
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "CI": "1",
    "NO_COLOR": "1",
    "PYTHONUNBUFFERED": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/tmp",
}

Isolation = Literal["auto", "bwrap", "none"]


class SandboxUnavailable(RuntimeError):
    """`isolation="bwrap"` was asked for and bubblewrap is not installed."""


@dataclass(frozen=True, slots=True)
class SandboxScope:
    """What commands run in one workspace get beyond its directory: variables and paths."""

    env: Mapping[str, str] = field(default_factory=dict)
    writable_paths: tuple[Path, ...] = ()
    hidden_paths: tuple[Path, ...] = ()
    readonly_paths: tuple[Path, ...] = ()  # shown again (read-only) inside a hidden path


@dataclass(frozen=True, slots=True)
class SandboxResult:
    exit_code: int | None  # None when the command was killed at its timeout
    output: str  # stdout and stderr interleaved, capped
    truncated: bool
    timed_out: bool
    duration_s: float
    isolated: bool  # ran inside bubblewrap namespaces

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def bwrap_path() -> str | None:
    """Where bubblewrap is, or None."""
    return shutil.which("bwrap")


def scrubbed_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed environment a sandboxed command gets, plus `extra`."""
    environment = dict(BASE_ENVIRONMENT)
    for name in PASSED_THROUGH:
        if name in os.environ:
            environment[name] = os.environ[name]
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    environment.update(extra or {})
    return environment


def bwrap_arguments(
    bwrap: str,
    cwd: Path,
    *,
    network: bool,
    writable_paths: Sequence[Path],
    hidden_paths: Sequence[Path],
    visible_paths: Sequence[Path] | None = None,
    readonly_paths: Sequence[Path] = (),
    moved: Sequence[tuple[Path, Path, bool]] = (),
) -> list[str]:
    """The bubblewrap prefix: read-only root (or only `visible_paths`), private /tmp, and the
    hidden, writable and read-only paths, each mount after those above it (the deeper wins).
    `moved` binds a host path at another place in the jail: (host path, jail path, writable)."""
    arguments = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
    ]
    writable = list(dict.fromkeys((cwd, *(path.resolve() for path in writable_paths))))
    if visible_paths is None:
        arguments += ["--ro-bind", "/", "/"]
    else:
        for visible in visible_paths:
            if visible.exists():
                arguments += ["--ro-bind", str(visible), str(visible)]
    arguments += [
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    if not network:
        arguments.append("--unshare-net")
    if os.geteuid() == 0:
        # As root bwrap keeps capabilities, which would let the command remount / writable.
        arguments += ["--cap-drop", "ALL"]
    arguments += _mount_arguments(
        writable, hidden_paths, visible_paths, readonly_paths=readonly_paths, moved=moved
    )
    arguments += ["--chdir", str(cwd), "--"]
    return arguments


def _mount_arguments(
    writable: list[Path],
    hidden_paths: Sequence[Path],
    visible_paths: Sequence[Path] | None,
    *,
    readonly_paths: Sequence[Path],
    moved: Sequence[tuple[Path, Path, bool]],
) -> list[str]:
    """The hidden, writable, read-only and moved mounts, shallowest first."""
    arguments: list[str] = []
    mounts: list[tuple[Path, str, Path]] = []  # (path in the jail, kind, host path)
    for hidden in (path.resolve() for path in hidden_paths):
        if visible_paths is not None and not any(
            hidden.is_relative_to(shown) for shown in (*visible_paths, *writable)
        ):
            continue  # outside everything the command sees: nothing to hide
        mounts.append((hidden, "hide", hidden))
    mounts += [(path, "bind", path) for path in writable]
    mounts += [(path.resolve(), "ro-bind", path.resolve()) for path in readonly_paths]
    mounts += [
        (target, "bind" if is_writable else "ro-bind", source)
        for source, target, is_writable in moved
    ]
    # Shallow first, so a worktree inside a hidden root is visible again and a read-only file
    # inside a writable directory stays read-only; at equal depth the later kind wins.
    for path, kind, source in sorted(mounts, key=lambda mount: len(mount[0].parts)):
        if kind == "hide" and path.is_dir():
            arguments += ["--tmpfs", str(path)]
        elif kind == "hide" and path.exists():
            arguments += ["--ro-bind", "/dev/null", str(path)]
        elif kind != "hide" and source.exists():
            arguments += [f"--{kind}", str(source), str(path)]
    return arguments


async def run_command(
    command: str | Sequence[str],
    cwd: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES,
    env: Mapping[str, str] | None = None,
    network: bool = True,
    writable_paths: Sequence[Path] = (),
    hidden_paths: Sequence[Path] = (),
    visible_paths: Sequence[Path] | None = None,
    readonly_paths: Sequence[Path] = (),
    on_line: LineCallback | None = None,
    stop_at_cap: bool = False,
    isolation: Isolation = "auto",
) -> SandboxResult:
    """Run `command` (a shell string, or an argv list) in `cwd` under the sandbox.

    `env` is added to the scrubbed environment. `writable_paths` are writable besides `cwd`;
    `hidden_paths` are replaced by an empty directory (or /dev/null for a file);
    `visible_paths`, when given, are all the command sees of the host (read-only) besides those;
    `readonly_paths` are shown read-only even inside a hidden path (toolchains in a home).
    `stop_at_cap` keeps the first `output_cap_bytes` and stops the command once it writes more,
    instead of keeping the head and the tail and letting it run. `network=False` and the path
    rules need bubblewrap; `isolation="bwrap"` refuses to run without it, `"none"` never uses
    it, `"auto"` uses it when installed. Under bwrap, the git repository `cwd` is in stays
    unable to steer git whatever is writable, and a linked worktree's shared git dir stays
    untouched (bot/isolation/git_jail.py).
    """
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    bwrap = None if isolation == "none" else bwrap_path()
    if isolation == "bwrap" and bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    cwd = await asyncio.to_thread(Path.resolve, cwd)
    if bwrap is None:
        if not network:
            log.warning("network cannot be switched off without bubblewrap; running with it")
        return await _run(argv, cwd, timeout_s, output_cap_bytes, env, on_line, stop_at_cap, None)
    guard = await asyncio.to_thread(guard_git_dirs, cwd, writable_paths)
    jailed = guard.jailed
    entering = None if jailed is None else asyncio.ensure_future(git_jail.enter_git_jail(jailed))
    try:
        if entering is not None:
            await asyncio.shield(entering)  # a cancel here still lets it finish, then leave
        prefix = await asyncio.to_thread(
            bwrap_arguments,
            bwrap,
            cwd,
            network=network,
            writable_paths=[*writable_paths, *guard.reopened],
            hidden_paths=hidden_paths,
            visible_paths=visible_paths,
            readonly_paths=[*readonly_paths, *guard.readonly],
            moved=guard.moved,
        )
        argv = [*prefix, *argv]
        return await _run(argv, cwd, timeout_s, output_cap_bytes, env, on_line, stop_at_cap, bwrap)
    finally:
        if entering is not None and jailed is not None:
            await asyncio.shield(_after_git_jail(entering, jailed))


async def _after_git_jail(entering: asyncio.Future[None], jailed: LinkedGitDirs) -> None:
    """Leave the jail once its enter is over (whether it finished, failed or was cancelled)."""
    await asyncio.wait([entering])
    await git_jail.leave_git_jail(jailed)


async def _run(
    argv: list[str],
    cwd: Path,
    timeout_s: float,
    output_cap_bytes: int,
    env: Mapping[str, str] | None,
    on_line: LineCallback | None,
    stop_at_cap: bool,
    bwrap: str | None,
) -> SandboxResult:
    collector = OutputCollector(output_cap_bytes, on_line, stop_at_cap=stop_at_cap)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=scrubbed_environment(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    pumping = asyncio.create_task(_pump(process, collector))
    try:
        await asyncio.wait_for(asyncio.shield(pumping), timeout_s)
        await process.wait()
    except TimeoutError:
        timed_out = True
        await _kill_tree(process)
        # A descendant that left the process group may still hold the pipe: stop reading.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pumping), KILL_GRACE_S)
    except BaseException:
        await _kill_tree(process)
        raise
    finally:
        if not pumping.done():
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping
    return SandboxResult(
        exit_code=None if timed_out else process.returncode,
        output=collector.text(),
        truncated=collector.truncated,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        isolated=bwrap is not None,
    )


async def _pump(process: asyncio.subprocess.Process, collector: OutputCollector) -> None:
    """Read the command's output into the collector to its end."""
    stdout = process.stdout
    if stdout is None:  # `_run` asks for a pipe: asyncio always makes one
        raise RuntimeError("the command's output pipe was not opened")
    stopping = False
    while chunk := await stdout.read(READ_CHUNK):
        await collector.feed(chunk)
        if collector.full and not stopping:
            # Stopped at the cap: what it writes while dying is read to the end and dropped.
            stopping = True
            await _kill_tree(process)
    await collector.feed(b"", final=True)


async def _kill_tree(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left after a grace period."""
    if process.returncode is not None:
        return
    for signal_number, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal_number)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
            return
