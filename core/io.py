"""Crash-safe file writing: every file is written under a temporary name beside its target and renamed into place.

A rename within one folder is atomic on POSIX, so a reader sees either the old file or the whole new one, never a
half-written one, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class DataError(ValueError):
    """Bad input data: the message names the file, the key or the shape at fault."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names the file and what is wrong."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never reuse a stranger's file; mode 0o666 lets the umask decide, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(exc):  # torch reports it as "unexpected pos" with ENOSPC only in the chain
            raise DiskFull(f"disk full at {path}: nothing was replaced, the last good {path.name} is kept; free space "
                           "and run the same command again to resume") from exc  # fmt: skip
        raise


class DiskFull(OSError):
    """No space left where a file was being written; the file it would have replaced is intact."""


def _disk_full(exc: BaseException | None) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderBusy(RuntimeError):
    """Another live process holds a folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "training") -> Iterator[None]:
    """Hold ``<folder>/.lock`` exclusively (``flock``, released by the kernel when the process dies, so a kill never
    leaves it stuck) while the block runs; FolderBusy, naming the holder's host and pid, when another process holds
    it. The file records the holder and stays (an unlocked file means nothing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusy(f"{folder}: {holder} is {what} in this folder; wait for it to end, or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} pid {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        yield


def folder_abandoned(folder: str | os.PathLike) -> bool:
    """Whether a folder that :func:`folder_lock` guarded is held by no live process: its lock file exists, names
    this host, and can be taken. False when it cannot be told (no lock file, or another host's)."""
    path = Path(folder) / ".lock"
    try:
        with open(path) as handle:
            if not handle.read().startswith(f"{socket.gethostname()} "):
                return False
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
    except (FileNotFoundError, BlockingIOError):
        return False


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` leaves when its process is killed mid-write, anywhere
    under ``folder``; call it only while holding the folder's lock (no other writer's file can be among them)."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
