"""Where earlier runs stopped reading each log, so a cron run reads only what is new.

A log is recognised by its first bytes, not its name or inode: they survive logrotate's
rename (``access.log`` → ``access.log.1``), its ``copytruncate`` copy and its compression
(``.1`` → ``.2.gz``), while a truncated or re-created ``access.log`` starts with other lines
(a log's first line carries a time stamp) and is read from its start.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from botguard.errors import InputError
from botguard.sources.files import STDIN, Start, _compression, content_head, is_live_name

#: Content bytes that identify a log (fewer while the log is shorter).
ID_BYTES = 1024
#: Cursors kept for logs no longer given: enough for weeks of daily rotations.
MAX_CURSORS = 64
#: Content bytes before a plain log's cursor that must be unchanged to resume there.
TAIL_BYTES = 256


@dataclass(frozen=True)
class Cursor:
    """How far a log was read: its identity (``head_len`` first content bytes and their
    digest), the content offset after the last whole line read, the next line's number,
    whether that run read anything from it (``grew``), and for a compressed log read to its
    end its packed identity (size and first bytes of the file itself), so that later runs
    skip it without inflating it."""

    head_len: int
    head_digest: str
    offset: int
    line_no: int
    grew: bool = False
    packed: str | None = None
    #: Digest of the ``TAIL_BYTES`` before ``offset`` (plain logs): a log replaced by another
    #: that begins alike is told apart by what it holds where the cursor stopped.
    tail_digest: str | None = None
    #: The name it was read under (for messages, and to follow its lines' samples).
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Cursor:
        return Cursor(**{f.name: d[f.name] for f in fields(Cursor) if f.name in d})


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class LogState:
    """A log as found at the start of a run: its identifying head, its content size (None
    when only reading tells: bzip2, xz, or a gzip still being written), the cursor an
    earlier run left on it, its packed identity when compressed, and ``same_as``: the log of
    this run holding the same lines (a rotation caught half-way), which is read instead."""

    head: bytes
    size: int | None
    cursor: Cursor | None
    packed: str | None = None
    plain: bool = True
    same_as: str | None = None
    #: A live log (not a rotation): its unterminated last line is left for a later run (a
    #: server may be writing it; read alone, its end would later count as a line of its own).
    #: A rotated log's last line is as complete as it will get.
    live: bool = True
    path: str = ""
    #: The cursor its first bytes matched, when what it holds at the cursor differs.
    replaced: Cursor | None = None

    @property
    def done(self) -> bool:
        """Nothing to read: an earlier run read it all, or another log of this run holds it."""
        c = self.cursor
        if self.same_as is not None:
            return True
        if c is not None and self.packed is not None and c.packed == self.packed:
            return True
        return c is not None and self.size is not None and c.offset >= self.size

    def start(self) -> Start:
        c = self.cursor
        return Start(c.offset, c.line_no) if c is not None else Start()


def _packed_id(fh: Any) -> str:
    size = os.fstat(fh.fileno()).st_size
    return f"{size}:{_digest(os.pread(fh.fileno(), ID_BYTES, 0))}"


def inspect(path: str, cursors: list[Cursor]) -> LogState:
    """Identify ``path`` and find the cursor an earlier run left on it."""
    if path == STDIN:
        raise InputError(
            "standard input cannot be read incrementally: nothing tells the next run where this one stopped",
            hint="name the log files (access.log access.log.1), or drop --incremental",
        )
    packed = None
    try:
        with open(path, "rb") as fh:
            kind = _compression(fh.read(6))
            size: int | None = os.fstat(fh.fileno()).st_size
            if kind is not None:
                packed = _packed_id(fh)
                known = next((c for c in cursors if c.packed == packed), None)
                if known is not None:  # read to its end before: not even inflated
                    return LogState(b"", known.offset, known, packed, plain=False)
            if kind == "gzip" and size:
                # The trailer's size (mod 2**32) is the content size of a single-member gzip.
                size = int.from_bytes(os.pread(fh.fileno(), 4, size - 4), "little")
            elif kind is not None:
                size = None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    head, _ = content_head(path, ID_BYTES)  # a gzip still being written: what there is
    matches = [c for c in cursors if 0 < c.head_len <= len(head) and _digest(head[: c.head_len]) == c.head_digest]
    found = max(matches, key=lambda c: c.offset, default=None)
    replaced = None
    if found is not None and kind is None and found.tail_digest is not None and _tail_digest(path, found.offset) != found.tail_digest:
        replaced, found = found, None  # another log that begins alike: read from its start
    if kind == "gzip" and size is not None and found is not None:
        if found.offset % (1 << 32) == size:
            size = found.offset  # a compressed rotation of a log read to its end
        elif size < found.offset % (1 << 32):
            size = None  # not a size: a gzip still being written (or several members)
    return LogState(head, size, found, packed, plain=kind is None, live=kind is None and is_live_name(path),
                    path=path, replaced=replaced)


def _tail_digest(path: str, offset: int) -> str | None:
    """Digest of a plain log's ``TAIL_BYTES`` before ``offset`` (None if it is shorter)."""
    if offset <= 0:
        return None
    n = min(TAIL_BYTES, offset)
    try:
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), n, offset - n)
    except OSError:
        return None
    return _digest(data) if len(data) == n else "short"


def inspect_all(paths: list[str], cursors: list[Cursor]) -> list[LogState]:
    """``inspect`` each log; logs of this run that hold the same lines (the same cursor, or
    the same first bytes) are one log caught half-way through a rotation (``copytruncate``
    copying, ``compress`` writing the .gz beside the plain file): only the most complete one
    is read, a plain file before a compressed one, the larger before the smaller."""
    states = [inspect(p, cursors) for p in paths]
    groups: dict[object, list[int]] = {}
    for i, st in enumerate(states):
        if not st.head:
            continue
        # Logs that hold the same lines begin with the same identifying bytes; two logs that
        # only share a short first line do not.
        key: object = (st.cursor, st.head)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda i: (states[i].plain, states[i].size or 0))
        for i in members:
            if i != best:
                states[i] = replace(states[i], same_as=paths[best])
    return states


def advanced(state: LogState, stop: int | None, next_line: int | None, complete: bool) -> Cursor | None:
    """The cursor after this run read ``state``'s log up to content offset ``stop``
    (``complete``: to its very end, so a compressed log is not read again)."""
    if state.same_as is not None:
        return None
    if not state.head:  # skipped by its packed identity
        return replace(state.cursor, grew=False, path=state.path or None) if state.cursor is not None else None
    start = state.start()
    offset = start.offset if stop is None else stop
    line_no = start.line_no if next_line is None else next_line
    packed = state.packed if complete and not state.plain else None
    tail = _tail_digest(state.path, offset) if state.plain and state.path else None
    return Cursor(len(state.head), _digest(state.head), offset, line_no, grew=stop is not None, packed=packed,
                  tail_digest=tail, path=state.path or None)


def lost(old: list[Cursor], states: list[LogState]) -> list[Cursor]:
    """Logs the previous run read new lines from that no log of this run continues: rotated
    out of the names given, their lines written since then are not read."""
    matched = {s.cursor for s in states if s.cursor is not None}
    return [c for c in old if c.grew and c not in matched]


def merged(old: list[Cursor], states: list[LogState], new: list[Cursor]) -> list[Cursor]:
    """This run's cursors, then the earlier ones that no log of this run matched, up to
    ``MAX_CURSORS`` in all (a log that grew past its first ``head_len`` bytes replaces its
    old, shorter cursor: the one it matched)."""
    matched = {s.cursor for s in states if s.cursor is not None}
    mine: dict[tuple[int, str], Cursor] = {}
    for c in new:
        k = (c.head_len, c.head_digest)
        if k not in mine or c.offset > mine[k].offset:
            mine[k] = c
    kept = [replace(c, grew=False) for c in old if c not in matched and (c.head_len, c.head_digest) not in mine]
    # Every log of this run keeps its cursor, however many there are; only those of logs no
    # longer given are capped.
    return list(mine.values()) + kept[: max(0, MAX_CURSORS - len(mine))]
