"""The git jail: what a sandboxed command may do to the git repository it runs in.

bot/sandbox.py runs untrusted commands (setup, tests, the agents' bash) in worktrees; this module
is the part of it that knows git.

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
bot/worktrees/git.py switches off what a repository's configuration could run for biagent's own
commands either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bot.worktrees.git import git_environment, run_git

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


# Where the jail sees the shared objects (read-only) behind its own object directory.
SHARED_OBJECTS_IN_JAIL = Path("/tmp/.biagent-shared-objects")
JAIL_OBJECTS = "biagent-objects"  # the command's own object directory, in the private git dir
_OBJECT_NAME = re.compile(r"[0-9a-f]{38}|[0-9a-f]{62}")
_OBJECT_TYPES = (b"blob", b"tree", b"commit", b"tag")


@dataclass(frozen=True, slots=True)
class GitGuard:
    """Binds that let a command in a git worktree commit without steering git afterwards."""

    readonly: tuple[Path, ...] = ()
    reopened: tuple[Path, ...] = ()  # writable again beneath a read-only one
    moved: tuple[tuple[Path, Path, bool], ...] = ()  # (host path, path in the jail, writable)
    private: Path | None = None  # a linked worktree's own git dir, when it is writable
    common: Path | None = None  # and the shared git dir it belongs to


_PRIVATE_LINKS = ("commondir", "gitdir", "config.worktree", "locked")
_PLAIN_PROTECTED = ("config", "hooks", "info", "commondir", "config.worktree")


def _find_dot_git(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate / ".git"
    return None


def guard_git_dirs(cwd: Path, writable_paths: Sequence[Path]) -> GitGuard:
    """What must stay read-only in the git repository `cwd` belongs to, given what is writable.

    A linked worktree (`.git` is a file): the `.git` file, the whole shared git dir (refs,
    objects, config, hooks, other worktrees' git dirs: whatever the caller made writable) and
    the private git dir's links (`config.worktree` is created empty so that the bind has a
    target); when the private git dir is writable it is opened again, and the command's own
    object directory is mounted over the shared `objects/` (`enter_git_jail` fills it in).
    A plain repository (`.git` is a directory): its `config`, `hooks/` and `info/`; the
    directory is bound onto itself so it cannot be swapped.
    Bind targets are mount points inside the jail: they cannot be removed or renamed either.
    """
    writable = [path.resolve() for path in (cwd, *writable_paths)]

    def is_writable(path: Path) -> bool:
        return any(path.is_relative_to(root) for root in writable)

    dot_git = _find_dot_git(cwd)
    if dot_git is None or not is_writable(dot_git.parent):
        return GitGuard()
    try:
        if dot_git.is_dir():
            return GitGuard(
                tuple(dot_git / name for name in _PLAIN_PROTECTED if (dot_git / name).exists()),
                (dot_git,),
            )
        text = dot_git.read_text(encoding="utf-8").strip()
        private = (dot_git.parent / text.removeprefix("gitdir:").strip()).resolve()
        if not private.is_dir():
            return GitGuard((dot_git,))
        common_link = private / "commondir"
        common = (
            (private / common_link.read_text(encoding="utf-8").strip()).resolve()
            if common_link.is_file()
            else private
        )
        readonly = [dot_git]
        if common != private:
            readonly.insert(0, common)
        if not is_writable(private) or common == private:
            readonly += [private / name for name in _PRIVATE_LINKS if (private / name).exists()]
            return GitGuard(tuple(readonly))
        (private / "config.worktree").touch(exist_ok=True)
        readonly += [private / name for name in _PRIVATE_LINKS if (private / name).exists()]
        own_objects = private / JAIL_OBJECTS
        moved = (
            (common / "objects", SHARED_OBJECTS_IN_JAIL, False),
            (own_objects, common / "objects", True),
        )
        return GitGuard(tuple(readonly), (private,), moved, private, common)
    except (OSError, UnicodeDecodeError) as error:
        # A repository too broken to read: let git fail inside; it cannot be guarded.
        log.warning("%s: git dirs not guarded (%s)", dot_git, error)
        return GitGuard()


# Caps on what biagent reads back from the jail: a loose object bigger than this (inflated or
# compressed) is dropped, and so is a pack file bigger than `MAX_JAIL_PACK_BYTES`.
MAX_JAIL_OBJECT_BYTES = 100 * 1024 * 1024
MAX_JAIL_PACK_BYTES = 1024 * 1024 * 1024
JAIL_RECORDS = "biagent-jail"  # in the shared git dir: one record per jailed worktree
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GitJailUnfinished(RuntimeError):
    """The previous command's objects could not be taken in: the worktree is not used until
    they are (its jail object directory is kept; see the log)."""


@dataclass(frozen=True, slots=True)
class _JailRecord:
    """What `enter_git_jail` changed, kept where the jail cannot write (the shared git dir,
    read-only inside it) until `leave_git_jail` has finished: the HEAD text before the command,
    the branch it named and its commit (None when unborn or detached), and, once the leave
    started, the HEAD the command left."""

    head: str
    ref: str | None
    sha: str | None
    left: str | None = None


def _record_path(common: Path, private: Path) -> Path:
    return common / JAIL_RECORDS / private.name


def _private_identity(private: Path) -> int:
    """Which private git dir a record belongs to: a worktree removed after a crash and another
    one made under the same name must not inherit its record."""
    return private.stat().st_ino


def _write_record(common: Path, private: Path, record: _JailRecord) -> None:
    path = _record_path(common, private)
    path.parent.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".biagent-")
    with os.fdopen(handle, "w", encoding="utf-8") as written:
        json.dump(
            {
                "head": record.head, "ref": record.ref, "sha": record.sha, "left": record.left,
                "private": _private_identity(private),
            },
            written,
        )  # fmt: skip
    os.replace(temporary, path)


def _read_record(common: Path, private: Path) -> _JailRecord | None:
    path = _record_path(common, private)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("private") != _private_identity(private):
            raise ValueError("it belongs to a removed worktree of the same name")
        return _JailRecord(data["head"], data.get("ref"), data.get("sha"), data.get("left"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s: jail record dropped (%s)", private, error)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _remove_tree(path: Path) -> None:
    """Remove `path` however deep the command made it: renamed away first (one step), then
    `rm -rf` (which does not recurse on the stack); failures are logged, never raised."""
    try:
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
            return
        if not path.exists():
            return
        trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=".biagent-trash-"))
        os.rename(path, trash / "gone")
        done = subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(trash)],
            capture_output=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            log.warning("%s: not removed: %s", trash, done.stderr.decode(errors="replace"))
    except Exception as error:
        log.warning("%s: not removed (%s)", path, error)


def _write_head(private: Path, text: str) -> None:
    """Replace the private git dir's HEAD (whatever the command left there) with `text`."""
    handle, temporary = tempfile.mkstemp(dir=private, prefix=".biagent-head-")
    with os.fdopen(handle, "w", encoding="utf-8") as written:
        written.write(text)
    head = private / "HEAD"
    if head.is_dir() and not head.is_symlink():
        _remove_tree(head)
    os.replace(temporary, head)


def _remove_stale_locks(private: Path) -> None:
    """The locks a command killed mid-git leaves behind (it has exited: they are stale)."""
    for name in ("HEAD.lock", "index.lock"):
        lock = private / name
        with contextlib.suppress(FileNotFoundError):
            if lock.is_dir() and not lock.is_symlink():
                _remove_tree(lock)
            else:
                lock.unlink()
            log.info("%s: stale %s removed", private, name)


def _fresh_object_dir(own_objects: Path) -> None:
    _remove_tree(own_objects)
    (own_objects / "info").mkdir(parents=True)
    (own_objects / "pack").mkdir()
    (own_objects / "info" / "alternates").write_text(f"{SHARED_OBJECTS_IN_JAIL}\n")


def _read_head(private: Path) -> str | None:
    """The private HEAD's text, if it is a small regular file (never through a symlink)."""
    head = private / "HEAD"
    try:
        if not stat.S_ISREG(head.lstat().st_mode):
            return None
        descriptor = os.open(head, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as opened:
            return opened.read(512).decode("utf-8", errors="replace").strip()
    except OSError:
        return None


async def enter_git_jail(guard: GitGuard) -> None:
    """Before the command: finish a leave a crash interrupted, then an empty object directory
    of its own, the jail record written, and HEAD detached (when it names a born branch)."""
    assert guard.private is not None and guard.common is not None
    private, common = guard.private, guard.common
    if await asyncio.to_thread(_read_record, common, private) is not None:
        log.warning("%s: the last command's jail was not left; finishing it", private)
        await leave_git_jail(guard)
        if await asyncio.to_thread(_record_path(common, private).exists):
            raise GitJailUnfinished(f"{private}: the last command's objects are not taken in")
    await asyncio.to_thread(_fresh_object_dir, private / JAIL_OBJECTS)
    head = await asyncio.to_thread(_read_head, private)
    if head is None:
        raise GitJailUnfinished(f"{private}: HEAD is not a readable file")
    ref = sha = None
    if head.startswith("ref: refs/heads/"):
        named = head.removeprefix("ref: ").strip()
        found = await run_git("rev-parse", "--verify", "-q", named, cwd=common, check=False)
        if found.returncode == 0 and _SHA.fullmatch(found.stdout.strip()):
            ref, sha = named, found.stdout.strip()  # else unborn: nothing to detach
    await asyncio.to_thread(_write_record, common, private, _JailRecord(head, ref, sha))
    if sha is not None:
        await asyncio.to_thread(_write_head, private, f"{sha}\n")


def _verified_loose_objects(own_objects: Path, shared_objects: Path) -> int:
    """Copy the loose objects the command wrote into the shared store, each only if its content
    hashes to its name (streamed, within `MAX_JAIL_OBJECT_BYTES`); symlinks and anything else
    are skipped. Returns how many were copied."""
    copied = 0
    for fan in sorted(os.listdir(own_objects)):
        directory = own_objects / fan
        if len(fan) != 2 or not stat.S_ISDIR(directory.lstat().st_mode):
            continue
        for rest in sorted(os.listdir(directory)):
            source = directory / rest
            target = shared_objects / fan / rest
            try:
                if (
                    not _OBJECT_NAME.fullmatch(rest)
                    or not stat.S_ISREG(source.lstat().st_mode)
                    or target.exists()
                ):
                    continue
                if _copy_verified(source, fan + rest, target):
                    copied += 1
                else:
                    log.warning(
                        "%s: object %s%s does not match its name or is too big; dropped",
                        own_objects, fan, rest,
                    )  # fmt: skip
            except OSError as error:
                log.warning("%s: object %s%s not taken in (%s)", own_objects, fan, rest, error)
    return copied


def _copy_verified(source: Path, name: str, target: Path) -> bool:
    """Copy the loose object `source` to `target` if it inflates (within the cap) to an object
    whose hash is `name`: read, inflated and hashed chunk by chunk, never all in memory."""
    cap = MAX_JAIL_OBJECT_BYTES
    descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as opened:
        if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
            return False
        target.parent.mkdir(exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".biagent-")
        try:
            with os.fdopen(handle, "wb") as written:
                good = _inflate_and_hash(opened, written, name, cap)
            if good:
                os.chmod(temporary, 0o444)
                os.replace(temporary, target)
            return good
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _inflate_and_hash(source: IO[bytes], copy: IO[bytes], name: str, cap: int) -> bool:
    digest = hashlib.sha1() if len(name) == 40 else hashlib.sha256()
    inflater = zlib.decompressobj()
    header = b""
    body_size = 0
    expected: int | None = None
    read = 0
    try:
        while chunk := source.read(READ_CHUNK):
            read += len(chunk)
            if read > cap:
                return False
            copy.write(chunk)
            pending = chunk
            while pending:
                inflated = inflater.decompress(pending, READ_CHUNK)
                pending = inflater.unconsumed_tail
                digest.update(inflated)
                if expected is None:
                    header += inflated
                    if b"\0" not in header:
                        if len(header) > 64:
                            return False
                        continue
                    head, _, rest = header.partition(b"\0")
                    kind, _, size = head.partition(b" ")
                    if kind not in _OBJECT_TYPES or not size.isdigit() or int(size) > cap:
                        return False
                    expected, body_size = int(size), len(rest)
                else:
                    body_size += len(inflated)
                if body_size > expected:
                    return False
        tail = inflater.flush()
        digest.update(tail)
        body_size += len(tail)
    except zlib.error:
        return False
    return (
        inflater.eof
        and expected is not None
        and body_size == expected
        and digest.hexdigest() == name
    )


def _packs_of(own_objects: Path) -> list[Path]:
    pack_dir = own_objects / "pack"
    try:
        if not stat.S_ISDIR(pack_dir.lstat().st_mode):
            return []
        names = sorted(name for name in os.listdir(pack_dir) if name.endswith(".pack"))
    except OSError:
        return []
    return [pack_dir / name for name in names]


async def _reach_is_complete(common: Path, head: str, old: str) -> bool:
    """Every object `head` reaches (beyond what `old` reaches) is in the shared store."""
    walked = await run_git(
        "rev-list", "--objects", "--missing=print", head, "--not", old, cwd=common, check=False
    )
    return walked.returncode == 0 and not any(
        line.startswith("?") for line in walked.stdout.splitlines()
    )


async def leave_git_jail(guard: GitGuard) -> None:
    """After the command, outside the jail (or after a crash, from the record): HEAD put back
    first, then its objects taken in, its branch moved, the record and the object dir dropped.
    Without a record (the enter never got that far) there is nothing to undo."""
    assert guard.private is not None and guard.common is not None
    private, common = guard.private, guard.common
    record = await asyncio.to_thread(_read_record, common, private)
    if record is None:
        return
    own_objects = private / JAIL_OBJECTS
    try:
        if record.left is None:
            left = await asyncio.to_thread(_read_head, private) or ""
            record = _JailRecord(record.head, record.ref, record.sha, left)
            try:
                await asyncio.to_thread(_write_record, common, private, record)
            except OSError as error:
                log.warning("%s: jail record not updated (%s)", private, error)
    finally:
        # Whatever happens after, HEAD never keeps what the command wrote there.
        await asyncio.to_thread(_remove_stale_locks, private)
        restored = f"ref: {record.ref}\n" if record.ref is not None else f"{record.head}\n"
        await asyncio.to_thread(_write_head, private, restored)
    try:
        await _take_in_objects(private, common, own_objects)
    except Exception:
        log.exception("%s: the command's objects were not taken in; kept for later", private)
        return
    try:
        await _move_branch(private, common, record)
    except Exception:
        log.exception("%s: the branch was not moved", private)
    try:
        await asyncio.to_thread(_record_path(common, private).unlink, missing_ok=True)
    finally:
        await asyncio.to_thread(_remove_tree, own_objects)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


async def _take_in_objects(private: Path, common: Path, own_objects: Path) -> None:
    if not await asyncio.to_thread(_is_real_dir, own_objects):
        return
    copied = await asyncio.to_thread(_verified_loose_objects, own_objects, common / "objects")
    for pack in await asyncio.to_thread(_packs_of, own_objects):
        await _index_pack(common, pack)  # index-pack names objects by content
    if copied:
        log.info("%s: %d new objects taken from the jail", private, copied)


async def _move_branch(private: Path, common: Path, record: _JailRecord) -> None:
    left, ref, old = record.left or "", record.ref, record.sha
    if ref is None or old is None or not _SHA.fullmatch(left) or left == old:
        return
    exists = await run_git("cat-file", "-e", f"{left}^{{commit}}", cwd=common, check=False)
    if exists.returncode != 0:
        log.warning("%s: the command left HEAD on %s, not a commit; ignored", private, left)
        return
    if not await _reach_is_complete(common, left, old):
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


def _linked_git_dirs(worktree: Path) -> tuple[Path, Path] | None:
    """A linked worktree's private and shared git dirs, or None."""
    try:
        dot_git = worktree / ".git"
        if dot_git.is_symlink() or not dot_git.is_file():
            return None
        text = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
        private = (worktree / text).resolve()
        common_link = private / "commondir"
        if not common_link.is_file():
            return None
        return private, (private / common_link.read_text(encoding="utf-8").strip()).resolve()
    except (OSError, UnicodeDecodeError):
        return None


async def finish_interrupted_git_jail(worktree: Path) -> bool:
    """At start-up: if a command's jail in the linked worktree `worktree` was never left (the
    process died), finish leaving it now. True if there was one."""
    dirs = await asyncio.to_thread(_linked_git_dirs, worktree)
    if dirs is None or await asyncio.to_thread(_read_record, dirs[1], dirs[0]) is None:
        return False
    await leave_git_jail(GitGuard(private=dirs[0], common=dirs[1]))
    return True


async def _index_pack(common: Path, pack: Path) -> None:
    """Feed one pack the command wrote to `git index-pack` from its file (never through a
    symlink, never bigger than `MAX_JAIL_PACK_BYTES`)."""
    try:
        descriptor = os.open(pack, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    with os.fdopen(descriptor, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode) or not status.st_size:
            return
        if status.st_size > MAX_JAIL_PACK_BYTES:
            log.warning("%s: a pack from the jail is too big (%d bytes)", common, status.st_size)
            return
        process = await asyncio.create_subprocess_exec(
            "git", "index-pack", "--stdin", "--fix-thin",
            cwd=str(common),
            env=git_environment(),
            stdin=opened,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await process.communicate()
    if process.returncode != 0:
        log.warning("%s: a pack from the jail was refused: %s", common, stderr.decode()[-500:])
