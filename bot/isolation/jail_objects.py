"""Taking the objects a jailed command wrote into the shared mirror (bot/isolation/git_jail.py):
a loose object only if its content hashes to its name (streamed, capped), a pack only through
`git index-pack` (which names objects by content), and the check that a commit reaches nothing
missing before its branch moves to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import zlib
from pathlib import Path
from typing import IO

from bot.gitops.runner import run_git
from bot.isolation.jail_files import is_real_dir

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Caps on what biagent reads back from the jail: a loose object bigger than this (inflated or
# compressed) is dropped, and so is a pack file bigger than `MAX_JAIL_PACK_BYTES`.
MAX_JAIL_OBJECT_BYTES = 100 * 1024 * 1024
MAX_JAIL_PACK_BYTES = 1024 * 1024 * 1024
_OBJECT_NAME = re.compile(r"[0-9a-f]{38}|[0-9a-f]{62}")
_OBJECT_TYPES = (b"blob", b"tree", b"commit", b"tag")


async def take_in_objects(private: Path, common: Path, own_objects: Path) -> None:
    if not await asyncio.to_thread(is_real_dir, own_objects):
        return
    copied = await asyncio.to_thread(_verified_loose_objects, own_objects, common / "objects")
    for pack in await asyncio.to_thread(_packs_of, own_objects):
        await _index_pack(common, pack)  # index-pack names objects by content
    if copied:
        log.info("%s: %d new objects taken from the jail", private, copied)


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
                if copy_verified(source, fan + rest, target):
                    copied += 1
                else:
                    log.warning(
                        "%s: object %s%s does not match its name or is too big; dropped",
                        own_objects, fan, rest,
                    )  # fmt: skip
            except OSError as error:
                log.warning("%s: object %s%s not taken in (%s)", own_objects, fan, rest, error)
    return copied


def copy_verified(source: Path, name: str, target: Path) -> bool:
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


async def reach_is_complete(common: Path, head: str, old: str) -> bool:
    """Every object `head` reaches (beyond what `old` reaches) is in the shared store."""
    walked = await run_git(
        "rev-list", "--objects", "--missing=print", head, "--not", old, cwd=common, check=False
    )
    return walked.returncode == 0 and not any(
        line.startswith("?") for line in walked.stdout.splitlines()
    )


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
        indexed = await run_git(
            "index-pack", "--stdin", "--fix-thin", cwd=common, stdin=opened, check=False
        )
    if indexed.returncode != 0:
        log.warning("%s: a pack from the jail was refused: %s", common, indexed.stderr[-500:])
