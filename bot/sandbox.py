"""The sandboxed command runner: one way to run an untrusted command in a directory.

Worktree setup (bot/worktrees/) and the agents' bash tool both run commands that come from a
repository or a model, so both go through `run_command`: a wall-clock timeout that kills the
whole process tree, an output cap (the head and the tail are kept, the middle is cut), a
scrubbed environment built from an allow-list (the service's own variables, tokens and keys
never reach the command), output streamed line by line to a callback, and, when `bwrap`
(bubblewrap) is installed, a mount/pid/ipc namespace: the file system is read-only except the
working directory and the paths the caller lists, chosen paths are hidden (the database, the
GitHub private key, other worktrees), /tmp is private, capabilities are dropped, and the network
can be switched off. Without bwrap the same limits apply except the namespaces; the result says
which one ran (`isolated`).

The two callers differ in three choices, all parameters here: what of the host is visible (setup:
the whole file system read-only; the agents' bash: only the system directories, `SYSTEM_PATHS`),
what happens at the output cap (setup: head and tail kept, the command runs on; the agents' bash:
the first bytes kept and the command stopped, `stop_at_cap`), and the network (setup: on; bash:
off). A `SandboxScope` carries what one workspace adds: its variables (ports, caches) and its
writable and hidden paths (WorktreeManager.command_sandbox builds it for a worktree).

A command that runs in a linked git worktree (a worktree of a shared mirror) must not touch
the mirror itself: other sessions' branches, the shared objects and everything that steers git
(`guard_git_dirs`). Under bwrap the shared git dir is read-only as a whole; the worktree's own
private git dir (index, HEAD) stays writable except its links (`commondir`, `gitdir`,
`config.worktree`, the `.git` file). New objects go to a directory of the command's own
(`biagent-objects` in the private git dir, mounted where the shared `objects/` is, with the
shared objects read-only behind it as an alternate), and the worktree's HEAD is detached for the
command, so `git add` and `git commit` still work. Afterwards, outside the jail
(`_leave_git_jail`), biagent copies in the new objects whose content matches their name (never
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
import codecs
import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from bot.worktrees.git import git_environment, run_git

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

LineCallback = Callable[[str], Awaitable[None] | None]
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
    object directory is mounted over the shared `objects/` (`_enter_git_jail` fills it in).
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
    """What `_enter_git_jail` changed, kept where the jail cannot write (the shared git dir,
    read-only inside it) until `_leave_git_jail` has finished: the HEAD text before the command,
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


async def _enter_git_jail(guard: GitGuard) -> None:
    """Before the command: finish a leave a crash interrupted, then an empty object directory
    of its own, the jail record written, and HEAD detached (when it names a born branch)."""
    assert guard.private is not None and guard.common is not None
    private, common = guard.private, guard.common
    if await asyncio.to_thread(_read_record, common, private) is not None:
        log.warning("%s: the last command's jail was not left; finishing it", private)
        await _leave_git_jail(guard)
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


async def _leave_git_jail(guard: GitGuard) -> None:
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
    await _leave_git_jail(GitGuard(private=dirs[0], common=dirs[1]))
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
    arguments += ["--chdir", str(cwd), "--"]
    return arguments


class _OutputCollector:
    """Keeps the output within the cap and streams lines until the cap.

    By default the head and the tail are kept and the middle is cut; with `stop_at_cap`, the
    first `cap_bytes` bytes exactly, and `full` tells the caller to stop the command.
    """

    def __init__(
        self, cap_bytes: int, on_line: LineCallback | None, *, stop_at_cap: bool = False
    ) -> None:
        self.half = max(1, cap_bytes // 2)
        self.cap_bytes = cap_bytes
        self.on_line = on_line
        self.stop_at_cap = stop_at_cap
        self.first_bytes = bytearray()
        self.head: list[str] = []
        self.head_bytes = 0
        self.tail: deque[str] = deque()
        self.tail_bytes = 0
        self.cut_bytes = 0
        self.streamed_bytes = 0
        self.stream_closed = False
        self.partial = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def truncated(self) -> bool:
        return self.cut_bytes > 0

    @property
    def full(self) -> bool:
        return self.stop_at_cap and self.truncated

    async def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if self.stop_at_cap:
            room = self.cap_bytes - len(self.first_bytes)
            if len(chunk) > room:
                self.cut_bytes += len(chunk) - room
                chunk = chunk[:room]
            self.first_bytes += chunk
        text = self.partial + self.decoder.decode(chunk, final=final)
        lines = text.split("\n")
        if final:
            self.partial = ""
            if lines[-1] == "":
                lines.pop()
        else:
            self.partial = lines.pop()
            if len(self.partial) > self.half:  # one endless line: keep it bounded
                lines.append(self.partial)
                self.partial = ""
        for line in lines:
            await self._line(line)

    async def _line(self, line: str) -> None:
        size = len(line.encode("utf-8", errors="replace")) + 1
        if not self.stop_at_cap:  # with stop_at_cap, feed keeps the first bytes as they are
            self._keep_head_or_tail(line, size)
        await self._stream(line, size)

    def _keep_head_or_tail(self, line: str, size: int) -> None:
        if self.head_bytes + size <= self.half and not self.tail:
            self.head.append(line)
            self.head_bytes += size
            return
        self.tail.append(line)
        self.tail_bytes += size
        while self.tail_bytes > self.half and len(self.tail) > 1:
            dropped = self.tail.popleft()
            dropped_size = len(dropped.encode("utf-8", errors="replace")) + 1
            self.tail_bytes -= dropped_size
            self.cut_bytes += dropped_size

    async def _stream(self, line: str, size: int) -> None:
        if self.on_line is None or self.stream_closed:
            return
        self.streamed_bytes += size
        if self.streamed_bytes > self.cap_bytes:
            self.stream_closed = True
            line = f"[output capped at {self.cap_bytes} bytes; the rest is not streamed]"
        outcome = self.on_line(line)
        if inspect.isawaitable(outcome):
            await outcome

    def text(self) -> str:
        if self.stop_at_cap:
            return self.first_bytes.decode("utf-8", errors="replace")
        parts = list(self.head)
        if self.cut_bytes:
            parts.append(f"[... {self.cut_bytes} bytes of output cut ...]")
        parts += list(self.tail)
        return "\n".join(parts)


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
    untouched (`guard_git_dirs`, `_enter_git_jail`, `_leave_git_jail`).
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
    entering = None if guard.private is None else asyncio.ensure_future(_enter_git_jail(guard))
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
        if entering is not None:
            await asyncio.shield(_after_git_jail(entering, guard))


async def _after_git_jail(entering: asyncio.Future[None], guard: GitGuard) -> None:
    """Leave the jail once its enter is over (whether it finished, failed or was cancelled)."""
    await asyncio.wait([entering])
    await _leave_git_jail(guard)


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
    collector = _OutputCollector(output_cap_bytes, on_line, stop_at_cap=stop_at_cap)
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
    assert process.stdout is not None
    stdout = process.stdout

    async def pump() -> None:
        stopping = False
        while chunk := await stdout.read(READ_CHUNK):
            await collector.feed(chunk)
            if collector.full and not stopping:
                # Stopped at the cap: what it writes while dying is read to the end and dropped.
                stopping = True
                await _kill_tree(process)
        await collector.feed(b"", final=True)

    timed_out = False
    pumping = asyncio.create_task(pump())
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
