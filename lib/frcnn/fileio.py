"""Files written so that none is ever half-written.

A file is written under a temporary name in its own folder (same file system), flushed to
disk and renamed over the final name; a failure or a kill leaves the previous file whole
and no temporary file behind (on an exception).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``: write it inside the block; on leaving the block
    normally it is synced and renamed to ``path``, on an exception removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it (mkstemp makes 0600)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, or a function that writes to the open binary file) to
    ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
    return Path(path)


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Make ``folder`` (and its parents) and write and remove a probe file in it; OSError
    naming the folder and the reason when it cannot be written (read-only, a file in the
    way, no permission), before any work depends on it."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        error = OSError(f"{what} {path} is not writable: {e.strerror or e}")
        error.errno = e.errno
        raise error from None
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
