"""The sandbox: every path an agent names stays inside its worktree; bash runs fenced in.

Paths: relative to the worktree, never with a `..` component, absolute only when inside the
worktree, and resolved through symlinks before the check, so a link pointing out is refused too.
The worktree's `.git` is off limits to the file tools (git itself, run from bash, may use it).

bash: a scrubbed environment (an allow-list, so no API key or token of the service leaks in),
a timeout that kills the whole process group, an output cap, and where `bwrap` (Debian package
bubblewrap) exists, a bubblewrap jail: the system read-only, the worktree (and its git
directory) writable, a private /tmp, no network. Without bwrap the command runs unjailed and
the result says so plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Variables a command may inherit; everything else (API keys, tokens, DATABASE_URL...) is dropped.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin", "/etc", "/opt")


class PathRefused(ValueError):
    """A path that would leave the worktree (or reach into .git)."""


def resolve_inside(worktree: Path, path: str) -> Path:
    """The absolute, symlink-resolved path of `path` inside `worktree`, or PathRefused."""
    if not path or "\x00" in path:
        raise PathRefused("a path is required")
    root = worktree.resolve()
    candidate = Path(path)
    if ".." in candidate.parts:
        raise PathRefused(f"{path}: '..' is not allowed; give a path inside the worktree")
    if candidate.is_absolute():
        try:
            candidate = candidate.relative_to(root)
        except ValueError:
            try:
                candidate = candidate.relative_to(worktree)
            except ValueError:
                raise PathRefused(
                    f"{path}: absolute paths outside the worktree are refused"
                ) from None
    resolved = (root / candidate).resolve()
    try:
        inside = resolved.relative_to(root)
    except ValueError:
        raise PathRefused(f"{path}: resolves outside the worktree (symlink)") from None
    if inside.parts and inside.parts[0] == ".git":
        raise PathRefused(f"{path}: the .git directory is not for file tools; use git in bash")
    return resolved


def real_path(path: Path) -> Path:
    return path.resolve()


def relative_name(worktree: Path, resolved: Path) -> str:
    return resolved.relative_to(worktree.resolve()).as_posix()


def scrubbed_environment(home: Path) -> dict[str, str]:
    environment = {name: os.environ[name] for name in ENV_ALLOW if name in os.environ}
    environment.setdefault("PATH", DEFAULT_PATH)
    environment["HOME"] = str(home)
    environment["GIT_TERMINAL_PROMPT"] = "0"
    return environment


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def git_dirs_outside(worktree: Path) -> list[Path]:
    """A linked worktree's `.git` is a file naming its git dir elsewhere: bind that too."""
    dot_git = worktree / ".git"
    if not dot_git.is_file():
        return []
    text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    if not text.startswith("gitdir:"):
        return []
    git_dir = (worktree / text.removeprefix("gitdir:").strip()).resolve()
    found = [git_dir]
    common = git_dir / "commondir"
    if common.is_file():
        found.append((git_dir / common.read_text(encoding="utf-8").strip()).resolve())
    root = worktree.resolve()
    return [path for path in found if not path.is_relative_to(root)]


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None
    output: str
    timed_out: bool
    truncated: bool
    sandboxed: bool

    def as_tool_text(self, timeout_s: float, cap: int) -> str:
        lines = []
        if not self.sandboxed:
            lines.append("note: no sandbox (bwrap not found): ran without network isolation")
        lines.append(self.output.rstrip("\n"))
        if self.truncated:
            lines.append(f"[output cut at {cap} bytes; the command was stopped]")
        if self.timed_out:
            lines.append(f"[timed out after {timeout_s:g}s; the command was killed]")
        else:
            lines.append(f"[exit code {self.exit_code}]")
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True, slots=True)
class BashPolicy:
    timeout_s: float = 120.0
    output_cap_bytes: int = 30_000
    use_bwrap: bool = True
    network: bool = False


def _bwrap_argv(bwrap: str, worktree: Path, command: str, policy: BashPolicy) -> list[str]:
    root = worktree.resolve()
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"]
    if not policy.network:
        argv.append("--unshare-net")
    for system_dir in SYSTEM_DIRS:
        if Path(system_dir).exists():
            argv += ["--ro-bind", system_dir, system_dir]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for git_dir in git_dirs_outside(root):
        argv += ["--bind", str(git_dir), str(git_dir)]
    argv += ["--bind", str(root), str(root), "--chdir", str(root)]
    return [*argv, "/bin/sh", "-c", command]


async def run_command(
    worktree: Path, command: str, policy: BashPolicy, *, timeout_s: float | None = None
) -> CommandResult:
    """Run `command` with /bin/sh in the worktree under the policy."""
    timeout = min(timeout_s or policy.timeout_s, policy.timeout_s)
    bwrap = bwrap_path() if policy.use_bwrap else None
    root = real_path(worktree)
    if bwrap is not None:
        argv = _bwrap_argv(bwrap, root, command, policy)
    else:
        argv = ["/bin/sh", "-c", command]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=root,
        env=scrubbed_environment(root),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    collected = bytearray()
    truncated = False
    timed_out = False

    async def read_all() -> None:
        nonlocal truncated
        assert process.stdout is not None
        while True:
            chunk = await process.stdout.read(65536)
            if not chunk:
                return
            collected.extend(chunk)
            if len(collected) > policy.output_cap_bytes:
                truncated = True
                del collected[policy.output_cap_bytes :]
                return

    try:
        await asyncio.wait_for(read_all(), timeout)
    except TimeoutError:
        timed_out = True
    if truncated or timed_out:
        _kill_group(process)
    try:
        exit_code = await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        _kill_group(process)
        exit_code = await process.wait()
    # Read the pipe to its end so that its transport closes now, not at garbage collection.
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(process.stdout.read(), 2)
    return CommandResult(
        exit_code=exit_code,
        output=collected.decode("utf-8", errors="replace"),
        timed_out=timed_out,
        truncated=truncated,
        sandboxed=bwrap is not None,
    )


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
