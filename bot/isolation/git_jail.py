"""The git jail: what a sandboxed command may do to the git repository it runs in.

bot/isolation/sandbox.py runs untrusted commands (setup, tests, the agents' bash) in worktrees;
the git jail is the part of it that knows git, in four modules: git_guard.py (what stays
read-only), jail_files.py (the record, HEAD, locks), jail_objects.py (taking the command's
objects in) and this one (entering and leaving).

A command that runs in a linked git worktree (a worktree of a shared mirror) must not touch the
mirror itself: other sessions' branches, the shared objects and everything that steers git
(`guard_git_dirs`). Under bwrap the shared git dir is read-only as a whole; the worktree's own
private git dir (index, HEAD) stays writable except its links (`commondir`, `gitdir`,
`config.worktree`, the `.git` file). New objects go to a directory of the command's own
(`biagent-objects` in the private git dir, mounted where the shared `objects/` is, with the
shared objects read-only behind it as an alternate), and the worktree's HEAD is detached for the
command, so `git add` and `git commit` still work. Afterwards, outside the jail
(`leave_git_jail`), biagent copies in the new objects whose content matches their name (never
following a symlink), moves the worktree's own branch to the commit the command left (only if
all it reaches is in the mirror), and attaches HEAD to it again (HEAD first, whatever fails
after). What the enter changed is recorded under the shared git dir (`biagent-jail/`, read-only
in the jail) until the leave is over, so a crash in between is finished by the next command or
at start-up (`finish_interrupted_git_jail`). Without bwrap none of this holds;
bot/gitops/runner.py switches off what a repository's configuration could run for biagent's own
commands either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from bot.gitops.runner import run_git
from bot.isolation.git_guard import JAIL_OBJECTS, LinkedGitDirs, linked_git_dirs
from bot.isolation.jail_files import (
    JailRecord,
    fresh_object_dir,
    read_head,
    read_record,
    record_path,
    remove_stale_locks,
    remove_tree,
    write_head,
    write_record,
)
from bot.isolation.jail_objects import reach_is_complete, take_in_objects

log = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GitJailUnfinished(RuntimeError):
    """The previous command's objects could not be taken in: the worktree is not used until
    they are (its jail object directory is kept; see the log)."""


async def enter_git_jail(dirs: LinkedGitDirs) -> None:
    """Before the command: finish a leave a crash interrupted, then an empty object directory
    of its own, the jail record written, and HEAD detached (when it names a born branch)."""
    private, common = dirs.private, dirs.common
    if await asyncio.to_thread(read_record, common, private) is not None:
        log.warning("%s: the last command's jail was not left; finishing it", private)
        await leave_git_jail(dirs)
        if await asyncio.to_thread(record_path(common, private).exists):
            raise GitJailUnfinished(f"{private}: the last command's objects are not taken in")
    await asyncio.to_thread(fresh_object_dir, private / JAIL_OBJECTS)
    head = await asyncio.to_thread(read_head, private)
    if head is None:
        raise GitJailUnfinished(f"{private}: HEAD is not a readable file")
    ref = sha = None
    if head.startswith("ref: refs/heads/"):
        named = head.removeprefix("ref: ").strip()
        found = await run_git("rev-parse", "--verify", "-q", named, cwd=common, check=False)
        if found.returncode == 0 and _SHA.fullmatch(found.stdout.strip()):
            ref, sha = named, found.stdout.strip()  # else unborn: nothing to detach
    await asyncio.to_thread(write_record, common, private, JailRecord(head, ref, sha))
    if sha is not None:
        await asyncio.to_thread(write_head, private, f"{sha}\n")


async def leave_git_jail(dirs: LinkedGitDirs) -> None:
    """After the command, outside the jail (or after a crash, from the record): HEAD put back
    first, then its objects taken in, its branch moved, the record and the object dir dropped.
    Without a record (the enter never got that far) there is nothing to undo."""
    private, common = dirs.private, dirs.common
    record = await asyncio.to_thread(read_record, common, private)
    if record is None:
        return
    own_objects = private / JAIL_OBJECTS
    try:
        if record.left is None:
            left = await asyncio.to_thread(read_head, private) or ""
            record = JailRecord(record.head, record.ref, record.sha, left)
            try:
                await asyncio.to_thread(write_record, common, private, record)
            except OSError as error:
                log.warning("%s: jail record not updated (%s)", private, error)
    finally:
        # Whatever happens after, HEAD never keeps what the command wrote there.
        await asyncio.to_thread(remove_stale_locks, private)
        restored = f"ref: {record.ref}\n" if record.ref is not None else f"{record.head}\n"
        await asyncio.to_thread(write_head, private, restored)
    try:
        await take_in_objects(private, common, own_objects)
    except Exception:
        log.exception("%s: the command's objects were not taken in; kept for later", private)
        return
    try:
        await _move_branch(private, common, record)
    except Exception:
        log.exception("%s: the branch was not moved", private)
    try:
        await asyncio.to_thread(record_path(common, private).unlink, missing_ok=True)
    finally:
        await asyncio.to_thread(remove_tree, own_objects)


async def _move_branch(private: Path, common: Path, record: JailRecord) -> None:
    left, ref, old = record.left or "", record.ref, record.sha
    if ref is None or old is None or not _SHA.fullmatch(left) or left == old:
        return
    exists = await run_git("cat-file", "-e", f"{left}^{{commit}}", cwd=common, check=False)
    if exists.returncode != 0:
        log.warning("%s: the command left HEAD on %s, not a commit; ignored", private, left)
        return
    if not await reach_is_complete(common, left, old):
        log.warning(
            "%s: the command's commit %s reaches missing objects; %s stays at %s",
            private, left, ref, old,
        )  # fmt: skip
        return
    moved = await run_git(
        "update-ref", "-m", "biagent: commits made in the sandbox", ref, left, old,
        cwd=common, check=False,
    )  # fmt: skip
    if moved.returncode != 0:
        log.warning("%s: %s not moved to %s: %s", private, ref, left, moved.stderr)


async def finish_interrupted_git_jail(worktree: Path) -> bool:
    """At start-up: if a command's jail in the linked worktree `worktree` was never left (the
    process died), finish leaving it now. True if there was one."""
    dirs = await asyncio.to_thread(linked_git_dirs, worktree)
    if dirs is None or await asyncio.to_thread(read_record, dirs.common, dirs.private) is None:
        return False
    await leave_git_jail(dirs)
    return True
