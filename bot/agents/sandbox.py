"""What an agent may touch: every path it names stays inside its worktree; bash runs fenced in.

Paths (the file tools): relative to the worktree, never with a `..` component, absolute only
when inside the worktree, and resolved through symlinks before the check, so a link pointing out
is refused too. The worktree's `.git` is off limits to the file tools (git itself, run from
bash, may use it).

bash: the agents' policy over the one command runner, bot/isolation/sandbox.py: a scrubbed
environment (an allow-list, so no API key or token of the service leaks in), a timeout that
kills the whole process group, an output cap at which the command is stopped, and where `bwrap`
(Debian package bubblewrap) exists, a jail: only the system directories visible and read-only,
the worktree and its own private git dir writable (except what steers git), the shared mirror
read-only with the command's own object directory in front of it (bot/isolation/git_jail.py
takes the new objects and commits in afterwards), a private /tmp, no network. When the step runs
in a worktree of the WorktreeManager, its `SandboxScope` adds the worktree's ports, its
repository's package caches (read-only: only setup writes them) and its writable and hidden
paths. Without bwrap the
command runs unjailed (no file system isolation, no network isolation) and the tool result says
so plainly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from bot.config import DEFAULT_SETTINGS
from bot.isolation import sandbox


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


def relative_name(worktree: Path, resolved: Path) -> str:
    return resolved.relative_to(worktree.resolve()).as_posix()


def git_dirs_outside(worktree: Path) -> list[Path]:
    """A linked worktree's `.git` is a file naming its private git dir elsewhere: that one is
    writable (index, HEAD). The shared git dir it names is listed too, but
    bot/isolation/git_jail.py keeps it read-only whatever is writable (`guard_git_dirs`)."""
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
class BashPolicy:
    timeout_s: float = DEFAULT_SETTINGS.agent_bash_timeout
    output_cap_bytes: int = 30_000
    use_bwrap: bool = True
    network: bool = False

    def timeout_for(self, requested_s: float | None) -> float:
        """The model may ask for a shorter timeout than the policy's, never a longer one."""
        return min(requested_s or self.timeout_s, self.timeout_s)


async def run_bash(
    worktree: Path,
    command: str,
    policy: BashPolicy,
    *,
    timeout_s: float | None = None,
    scope: sandbox.SandboxScope | None = None,
) -> sandbox.SandboxResult:
    """Run `command` with /bin/sh in the worktree under the policy (and the worktree's scope)."""
    scope = scope or sandbox.SandboxScope()
    root = await asyncio.to_thread(worktree.resolve)
    git_dirs = await asyncio.to_thread(git_dirs_outside, root)
    return await sandbox.run_command(
        command,
        root,
        timeout_s=policy.timeout_for(timeout_s),
        output_cap_bytes=policy.output_cap_bytes,
        env={**scope.env, "HOME": str(root)},
        network=policy.network,
        writable_paths=[*git_dirs, *scope.writable_paths],
        hidden_paths=scope.hidden_paths,
        readonly_paths=scope.readonly_paths,
        visible_paths=sandbox.SYSTEM_PATHS,
        stop_at_cap=True,
        isolation="auto" if policy.use_bwrap else "none",
    )


def bash_tool_text(result: sandbox.SandboxResult, timeout_s: float, cap: int) -> str:
    """The bash tool's answer to the model: the output, then how the command ended."""
    lines = []
    if not result.isolated:
        lines.append(
            "note: no sandbox (bwrap not found): ran without file system isolation (the whole"
            " host was readable and writable as the service's user) and without network"
            " isolation"
        )
    lines.append(result.output.rstrip("\n"))
    if result.truncated:
        lines.append(f"[output cut at {cap} bytes; the command was stopped]")
    if result.timed_out:
        lines.append(f"[timed out after {timeout_s:g}s; the command was killed]")
    else:
        lines.append(f"[exit code {result.exit_code}]")
    return "\n".join(line for line in lines if line)
