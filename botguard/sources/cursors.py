"""Where earlier runs stopped reading each log, so a cron run reads only what is new.

A log is recognised by its first bytes, not its name or inode: they survive logrotate's
rename (``access.log`` → ``access.log.1``), its ``copytruncate`` copy and its compression
(``.1`` → ``.2.gz``), while a truncated or re-created ``access.log`` starts with other lines
(a log's first line carries a time stamp) and is read from its start.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any

from botguard.errors import InputError
from botguard.sources.files import STDIN, Start, TruncatedGzip, _compression, _raw_blocks

#: Content bytes that identify a log (fewer while the log is shorter).
ID_BYTES = 1024
#: Cursors kept for logs no longer given: enough for weeks of daily rotations.
MAX_CURSORS = 64


@dataclass(frozen=True)
class Cursor:
    """How far a log was read: its identity (``head_len`` first content bytes and their
    digest), the content offset after the last whole line read, the next line's number,
    and the content size at the time (an unterminated last line is read once the log has
    stopped growing)."""

    head_len: int
    head_digest: str
    offset: int
    line_no: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Cursor:
        return Cursor(**{k: d[k] for k in ("head_len", "head_digest", "offset", "line_no", "size")})


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class LogState:
    """A log as found at the start of a run: its identifying head, its content size (None
    when only reading tells: bzip2, xz) and the cursor an earlier run left on it."""

    head: bytes
    size: int | None
    cursor: Cursor | None

    @property
    def done(self) -> bool:
        """Everything in it was read by an earlier run."""
        c = self.cursor
        return c is not None and self.size is not None and c.offset >= self.size

    def start(self) -> Start:
        c = self.cursor
        return Start(c.offset, c.line_no) if c is not None else Start()

    def hold_partial(self) -> bool:
        """Leave an unterminated last line for the next run, unless the log has not grown
        since the previous run (then the line is as complete as it will get)."""
        c = self.cursor
        return not (c is not None and self.size is not None and c.size == self.size)


def inspect(path: str, cursors: list[Cursor]) -> LogState:
    """Identify ``path`` and find the cursor an earlier run left on it."""
    if path == STDIN:
        raise InputError(
            "standard input cannot be read incrementally: nothing tells the next run where this one stopped",
            hint="name the log files (access.log access.log.1), or drop --incremental",
        )
    try:
        with open(path, "rb") as fh:
            kind = _compression(fh.read(6))
            size: int | None = os.fstat(fh.fileno()).st_size
            if kind == "gzip" and size:
                # The trailer's size (mod 2**32) is the content size of a single-member gzip.
                size = int.from_bytes(os.pread(fh.fileno(), 4, size - 4), "little")
            elif kind is not None:
                size = None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    head = b""
    blocks = _raw_blocks(path, ID_BYTES)
    try:
        for block in blocks:
            head += block
            if len(head) >= ID_BYTES:
                break
    except TruncatedGzip:
        pass
    finally:
        blocks.close()
    head = head[:ID_BYTES]
    matches = [c for c in cursors if 0 < c.head_len <= len(head) and _digest(head[: c.head_len]) == c.head_digest]
    found = max(matches, key=lambda c: c.offset, default=None)
    if found is not None and kind == "gzip" and size is not None and found.offset % (1 << 32) == size:
        size = found.offset  # a compressed rotation of a log read to its end
    return LogState(head, size, found)


def advanced(state: LogState, stop: int | None, next_line: int | None) -> Cursor | None:
    """The cursor after this run read ``state``'s log up to content offset ``stop``."""
    if not state.head:
        return None
    start = state.start()
    offset = start.offset if stop is None else stop
    line_no = start.line_no if next_line is None else next_line
    size = state.size if state.size is not None else offset
    return Cursor(len(state.head), _digest(state.head), offset, line_no, size)


def merged(old: list[Cursor], states: list[LogState], new: list[Cursor]) -> list[Cursor]:
    """This run's cursors, then the earlier ones that no log of this run matched, at most
    ``MAX_CURSORS`` (a log that grew past its first ``head_len`` bytes replaces its old,
    shorter cursor: the one it matched)."""
    matched = {s.cursor for s in states if s.cursor is not None}
    heads = {(c.head_len, c.head_digest) for c in new}
    kept = [c for c in old if c not in matched and (c.head_len, c.head_digest) not in heads]
    return (new + kept)[:MAX_CURSORS]
