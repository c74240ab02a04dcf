"""The files of the git jail (bot/isolation/git_jail.py) on the host side: its record in the
shared git dir, the private HEAD read and written without following a symlink, stale locks,
the command's object directory made fresh, and removing whatever tree a command left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.isolation.git_guard import SHARED_OBJECTS_IN_JAIL

log = logging.getLogger(__name__)

JAIL_RECORDS = "biagent-jail"  # in the shared git dir: one record per jailed worktree


@dataclass(frozen=True, slots=True)
class JailRecord:
    """What `enter_git_jail` changed, kept where the jail cannot write (the shared git dir,
    read-only inside it) until `leave_git_jail` has finished: the HEAD text before the command,
    the branch it named and its commit (None when unborn or detached), and, once the leave
    started, the HEAD the command left."""

    head: str
    ref: str | None
    sha: str | None
    left: str | None = None


def record_path(common: Path, private: Path) -> Path:
    return common / JAIL_RECORDS / private.name


def _private_identity(private: Path) -> int:
    """Which private git dir a record belongs to: a worktree removed after a crash and another
    one made under the same name must not inherit its record."""
    return private.stat().st_ino


def write_record(common: Path, private: Path, record: JailRecord) -> None:
    path = record_path(common, private)
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


def read_record(common: Path, private: Path) -> JailRecord | None:
    path = record_path(common, private)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("private") != _private_identity(private):
            raise ValueError("it belongs to a removed worktree of the same name")
        return JailRecord(data["head"], data.get("ref"), data.get("sha"), data.get("left"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s: jail record dropped (%s)", private, error)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def remove_tree(path: Path) -> None:
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


def write_head(private: Path, text: str) -> None:
    """Replace the private git dir's HEAD (whatever the command left there) with `text`."""
    handle, temporary = tempfile.mkstemp(dir=private, prefix=".biagent-head-")
    with os.fdopen(handle, "w", encoding="utf-8") as written:
        written.write(text)
    head = private / "HEAD"
    if head.is_dir() and not head.is_symlink():
        remove_tree(head)
    os.replace(temporary, head)


def remove_stale_locks(private: Path) -> None:
    """The locks a command killed mid-git leaves behind (it has exited: they are stale)."""
    for name in ("HEAD.lock", "index.lock"):
        lock = private / name
        with contextlib.suppress(FileNotFoundError):
            if lock.is_dir() and not lock.is_symlink():
                remove_tree(lock)
            else:
                lock.unlink()
            log.info("%s: stale %s removed", private, name)


def fresh_object_dir(own_objects: Path) -> None:
    remove_tree(own_objects)
    (own_objects / "info").mkdir(parents=True)
    (own_objects / "pack").mkdir()
    (own_objects / "info" / "alternates").write_text(f"{SHARED_OBJECTS_IN_JAIL}\n")


def read_head(private: Path) -> str | None:
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


def is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False
