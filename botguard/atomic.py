"""Atomic file replacement: a reader (nginx reload, cron, a WAF sync) never sees half a file.

A web server reloading while botguard writes must get either the previous list or the new one;
a truncated deny list silently unblocks, a truncated nft file fails to load. So: write a temp
file in the same directory (same filesystem, so rename is atomic), fsync it, rename it over the
target, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: Mode for a new file: readable by the service that loads it (nginx workers, haproxy).
DEFAULT_MODE = 0o644


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` atomically and durably when the block ends
    without an error: for outputs too large to build in memory first (a writer such as Polars'
    ``write_ndjson`` streams into it).

    An existing file keeps its permission bits (operators often tighten them) and, when we may
    set it (root), its owner: a root cron job must not hand nginx's list to root. A new file gets
    :data:`DEFAULT_MODE`. If anything fails, the temp file is removed and the target is left as
    it was, and the error names ``path``. A symlink at ``path`` is replaced by a regular file,
    not followed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    owner: tuple[int, int] | None = None
    try:
        st = path.stat()
        mode = stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode = DEFAULT_MODE
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # name the file the caller asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):
                os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # disk full: which file
        raise
    _fsync_dir(directory)
