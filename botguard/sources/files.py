"""Log sources: files, globs, directories, gzip, stdin → bounded chunks of whole lines.

Chunks are raw bytes cut at a newline, so parsers can hand them to Polars in one call and
memory stays bounded by ``batch_bytes`` whatever the size of the log.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import BinaryIO

from botguard.errors import InputError

STDIN = "-"
_ROTATED = re.compile(r"^(?P<base>.+?)(?:\.(?P<num>\d+))?(?P<gz>\.(?:gz|bz2|xz|zst))?$")
_DATED = re.compile(r"^(?P<base>.+?)[-.](?P<date>\d{8}(?:\d{2})?)(?P<gz>\.(?:gz|bz2|xz|zst))?$")


@dataclass(frozen=True)
class Chunk:
    """Whole lines from one source; ``first_line_no`` is 1-based.

    The lines are ``raw[:end]``: a plain file's block is handed over as read, with the partial
    last line still on it, because slicing would copy every batch once more. Readers that can
    stop by themselves (the CSV path reads ``n_lines`` rows) take ``raw``; the others ``data``.
    """

    source: str
    first_line_no: int
    raw: bytes
    n_lines: int
    end: int = -1  # -1: all of raw
    stop: int = -1  # content offset just after these lines (for resuming), -1: unknown

    @property
    def size(self) -> int:
        return len(self.raw) if self.end < 0 else self.end

    def find(self, sub: bytes) -> bool:
        """Whether ``sub`` occurs in the lines (no copy)."""
        return self.raw.find(sub, 0, self.size) >= 0

    @cached_property
    def data(self) -> bytes:
        return self.raw if self.end < 0 else self.raw[: self.end]


@dataclass
class SourceProblem:
    source: str
    message: str


def _rotation_key(path: str) -> tuple[str, str, int, str]:
    """Sort key that reads rotated logs oldest first: access.log.2.gz, access.log.1, access.log."""
    p = Path(path)
    name = p.name
    m = _DATED.match(name)
    if m:
        return (str(p.parent), m.group("base"), 0, m.group("date"))
    m = _ROTATED.match(name)
    assert m is not None
    num = int(m.group("num")) if m.group("num") else 0
    # Higher rotation number = older; the live file (0) comes last.
    return (str(p.parent), m.group("base"), -num, "~" if num == 0 else "")


def is_live_name(path: str) -> bool:
    """Whether the name is a live log's, not a rotation's (access.log, not access.log.1,
    access.log-20260302 or access.log.2.gz)."""
    name = Path(path).name
    if _DATED.match(name):
        return False
    m = _ROTATED.match(name)
    return m is None or not (m.group("num") or m.group("gz"))


_ERROR_LOG = re.compile(r"(?:^|[._-])error(?:s)?(?:[._-]|$)", re.IGNORECASE)
#: Files in a log directory that are never logs (botguard's own outputs among them).
_NOT_A_LOG = re.compile(r"\.(?:parquet|db|sqlite3?|html?|pdf|png|jpe?g|pid|lock)$", re.IGNORECASE)


def expand_inputs(inputs: list[str], missing: list[str] | None = None) -> list[str]:
    """Files, globs and directories → ordered list of file paths ('-' kept for stdin). With a
    ``missing`` list, names and patterns that match no file go there instead of raising, as
    long as something matched."""
    out: list[str] = []
    for item in inputs:
        if item == STDIN:
            out.append(STDIN)
            continue
        if missing is not None and not glob.glob(item) and not Path(item).exists():
            missing.append(item)
            continue
        if any(c in item for c in "*?["):
            matches = sorted(m for m in glob.glob(item) if os.path.isfile(m))
            if not matches:
                raise InputError(f"{item}: no file matches this pattern")
            out.extend(sorted(matches, key=_rotation_key))
            continue
        path = Path(item)
        if path.is_dir():
            # A server's log directory holds its error logs too (/var/log/nginx/error.log):
            # another format, never access lines. Name them to read them.
            files = [
                str(f) for f in sorted(path.iterdir())
                if f.is_file() and not f.name.startswith(".") and not _ERROR_LOG.search(f.name)
                and not _NOT_A_LOG.search(f.name)
            ]
            if not files:
                raise InputError(f"{item}: directory contains no log files")
            out.extend(sorted(files, key=_rotation_key))
        elif path.is_file():
            out.append(str(path))
        elif path.exists():
            raise InputError(f"{item}: not a regular file")
        else:
            raise InputError(f"{item}: no such file", hint="check the path, or use '-' for stdin")
    if missing and not out:
        raise InputError(f"{missing[0]}: no such file" + (f" (nor {', '.join(missing[1:])})" if missing[1:] else ""),
                         hint="check the path")
    # The same file named twice (access.log and a glob that matches it too, or a symlink) is
    # read once: its lines would otherwise count twice.
    seen: set[str] = set()
    unique: list[str] = []
    for p in out:
        real = p if p == STDIN else os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            unique.append(p)
    out = unique
    # Rotated siblings given separately (access.log access.log.1) are still read oldest first.
    files = [p for p in out if p != STDIN]
    if len(files) > 1 and len(set(files)) == len(files):
        order = sorted(files, key=_rotation_key)
        it = iter(order)
        out = [p if p == STDIN else next(it) for p in out]
    return out


_RAW_BLOCK = 4 << 20
_PROBE = 1 << 16


@lru_cache(maxsize=1)
def keep_batch_buffers() -> bool:
    """Ask glibc to serve batch-sized buffers from its heap and keep them after free.

    By default every allocation above 32 MiB is a fresh ``mmap`` that is unmapped on free, so
    each batch pays a page fault per 4 KiB before a byte is copied: reading a 400 MB log took
    0.25 s, of which 0.2 s were page faults. Reused heap pages cost nothing. The heap then
    holds on to about two batches, which ``batch_bytes`` bounds anyway. A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


class TruncatedGzip(Exception):
    pass


def _raw_blocks(path: str, block_size: int = _RAW_BLOCK) -> Generator[bytes, None, None]:
    """Decompressed bytes of a file or stdin, in blocks. Gzip is recognised by its magic bytes
    (on stdin too) and inflated incrementally, so on a truncated or corrupt stream every byte
    inflated before the damage has already been yielded before ``TruncatedGzip`` is raised."""
    if path == STDIN:
        fh: BinaryIO = sys.stdin.buffer
    else:
        try:
            fh = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        first = fh.read(block_size)
        kind = _compression(first)
        if kind == "zstd":
            raise InputError(
                f"{path}: zstd-compressed input is not supported",
                hint=f"decompress it on the way in: zstd -dc {path} | botguard ... -",
            )
        if kind in ("bz2", "xz"):
            yield from _unpack_stream(fh, first, kind, block_size)
            return
        if kind is None:
            block = first
            while block:
                yield block
                block = fh.read(block_size)
            return
        inflater = zlib.decompressobj(wbits=31)
        fed = False  # has the current gzip member received any input?
        block = first
        while block:
            data = block
            while data:
                fed = True
                try:
                    # Bounded output per call: a 1 KB block of a repetitive log can inflate to
                    # megabytes, and memory must stay bounded.
                    out = inflater.decompress(data, block_size)
                except zlib.error as exc:
                    raise TruncatedGzip(f"corrupt gzip data: {exc}") from None
                if out:
                    yield out
                if inflater.eof:
                    # Concatenated gzip members (e.g. appended rotations): start the next one.
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=31)
                    fed = False
                else:
                    data = inflater.unconsumed_tail
            block = fh.read(block_size)
        tail = inflater.flush()
        if tail:
            yield tail
        if fed and not inflater.eof:
            raise TruncatedGzip("truncated gzip (unexpected end of file)")
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _compression(head: bytes) -> str | None:
    """The compression a file's first bytes announce (whatever its name), or None."""
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def _unpack_stream(fh: BinaryIO, first: bytes, kind: str, block_size: int) -> Iterator[bytes]:
    """bzip2 or xz (standard library), incrementally and with bounded output per call, across
    concatenated streams; truncation raises ``TruncatedGzip`` after every byte before it."""
    import bz2
    import lzma

    def fresh() -> bz2.BZ2Decompressor | lzma.LZMADecompressor:
        return bz2.BZ2Decompressor() if kind == "bz2" else lzma.LZMADecompressor()

    unpacker, fed, block = fresh(), False, first
    while block:
        data = block
        while True:
            fed = fed or bool(data)
            try:
                out = unpacker.decompress(data, block_size)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise TruncatedGzip(f"corrupt {kind} data: {exc}") from None
            if out:
                yield out
            if unpacker.eof:
                data, unpacker, fed = unpacker.unused_data, fresh(), False
                if not data:
                    break
            elif unpacker.needs_input:
                break
            else:
                data = b""
        block = fh.read(block_size)
    if fed and not unpacker.eof:
        raise TruncatedGzip(f"truncated {kind} (unexpected end of file)")


_HEAD = 1 << 16


def _fingerprint(path: str) -> tuple[int, bytes, bytes] | None:
    """(content size, first and last 64 KiB of content) of a plain or gzip file, None for
    others. A gzip's size is its trailer's (mod 2**32) and its tail is not read: cheap."""
    try:
        with open(path, "rb") as fh:
            kind = _compression(fh.read(6))
            if kind not in (None, "gzip"):
                return None
            size = os.fstat(fh.fileno()).st_size
            if kind is None:
                return size, os.pread(fh.fileno(), _HEAD, 0), os.pread(fh.fileno(), _HEAD, max(0, size - _HEAD))
            size = int.from_bytes(os.pread(fh.fileno(), 4, size - 4), "little")
        head, truncated = content_head(path, _HEAD)
        return None if truncated else (size, head, b"")
    except (OSError, InputError):
        return None


def content_head(path: str, n: int) -> tuple[bytes, bool]:
    """The first ``n`` bytes of a log's content (inflated through the reader's own
    ``_raw_blocks``, which stops there), and whether the stream broke off before them."""
    head = b""
    blocks = _raw_blocks(path, n)
    try:
        for block in blocks:
            head += block
            if len(head) >= n:
                break
    except TruncatedGzip:
        return head[:n], True
    finally:
        blocks.close()
    return head[:n], False


def same_content(paths: list[str]) -> list[tuple[str, str]]:
    """(skipped, kept) for files whose content is another's: a copy of a log under another
    name, or ``access.log.1`` beside its ``.gz`` while logrotate compresses. Compared by size
    and the first (and, for plain files, last) 64 KiB; the first file in read order is kept."""
    seen: dict[tuple[int, bytes], list[tuple[str, bytes]]] = {}
    out = []
    for path in paths:
        if path == STDIN:
            continue
        fp = _fingerprint(path)
        if fp is None or fp[0] == 0:
            continue
        size, head, tail = fp
        for kept, kept_tail in seen.get((size % (1 << 32), head), []):
            if not tail or not kept_tail or tail == kept_tail:
                out.append((path, kept))
                break
        else:
            seen.setdefault((size % (1 << 32), head), []).append((path, tail))
    return out


def _is_compressed(path: str) -> bool:
    """Compressed (gzip, bzip2, xz, zstd), by the magic bytes: read through ``_raw_blocks``."""
    try:
        with open(path, "rb") as fh:
            return _compression(fh.read(6)) is not None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None


def _plain_chunks(path: str, name: str, batch_bytes: int, start: Start, hold_partial: bool) -> Iterator[Chunk]:
    """Uncompressed files: one read per batch, cut at the last newline, and seek back over the
    partial line, so each byte is copied once (no joining of blocks). With ``hold_partial``
    an unterminated last line is left for a later run (a writer may be half-way through it)."""
    line_no = start.line_no
    probe = min(_PROBE, batch_bytes)
    with open(path, "rb") as fh:
        fh.seek(start.offset)
        while True:
            # Peek at the end of the next batch for its last newline, then read exactly up to
            # it: the batch arrives as one bytes object that needs no slicing (a copy).
            pos = fh.tell()
            window = os.pread(fh.fileno(), probe, pos + batch_bytes - probe)
            k = window.rfind(b"\n") if len(window) == probe else -1
            if k >= 0:
                want = batch_bytes - probe + k + 1
                block = fh.read(want)
                if len(block) == want and block.endswith(b"\n"):
                    n = block.count(b"\n")
                    yield Chunk(name, line_no, block, n, stop=pos + want)
                    line_no += n
                    continue
                fh.seek(pos)  # the file changed under us: take the general path
            block = fh.read(batch_bytes)
            if not block:
                return
            cut = block.rfind(b"\n") + 1
            if 0 < cut < len(block):
                fh.seek(cut - len(block), os.SEEK_CUR)
                n = block.count(b"\n", 0, cut)
                yield Chunk(name, line_no, block, n, end=cut, stop=pos + cut)
                line_no += n
                continue
            if cut == 0 and len(block) == batch_bytes:
                # One line longer than a batch: keep reading until it ends.
                more = [block]
                while True:
                    extra = fh.readline()
                    more.append(extra)
                    if not extra or extra.endswith(b"\n"):
                        break
                block = b"".join(more)
            if hold_partial and not block.endswith(b"\n"):
                return
            n = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            yield Chunk(name, line_no, block, n, stop=pos + len(block))
            line_no += n


@dataclass(frozen=True)
class Start:
    """Where to start reading a log's content: a byte offset (of the decompressed content for
    a compressed file) at a line boundary, and that line's number."""

    offset: int = 0
    line_no: int = 1


def read_chunks(
    path: str, batch_bytes: int, problems: list[SourceProblem] | None = None, *,
    start: Start = Start(), hold_partial: bool = False,
) -> Iterator[Chunk]:
    """Yield chunks of whole lines of about ``batch_bytes``, from ``start``. A truncated gzip
    is reported in ``problems``; the lines read before the damage are still yielded (the
    partial last line too, so the parser can count it as a reject). ``hold_partial`` leaves
    an unterminated last line unread (see ``_plain_chunks``)."""
    for chunk in _chunks(path, batch_bytes, problems, start, hold_partial):
        if chunk.first_line_no == 1 and chunk.raw.startswith(_BOM):
            # A UTF-8 byte-order mark (Windows tools write one) would spoil the first line.
            end = -1 if chunk.end < 0 else chunk.end - len(_BOM)
            chunk = Chunk(chunk.source, 1, chunk.raw[len(_BOM):], chunk.n_lines, end, chunk.stop)
        yield chunk


_BOM = b"\xef\xbb\xbf"


def _chunks(
    path: str, batch_bytes: int, problems: list[SourceProblem] | None, start: Start, hold_partial: bool
) -> Iterator[Chunk]:
    name = "<stdin>" if path == STDIN else path
    keep_batch_buffers()
    if path != STDIN and not _is_compressed(path):
        yield from _plain_chunks(path, name, batch_bytes, start, hold_partial)
        return
    line_no = start.line_no
    pos = start.offset  # content offset of the first pending byte
    skip = start.offset
    pending: list[bytes] = []
    size = 0

    def emit(final: bool) -> Iterator[Chunk]:
        nonlocal pending, size, line_no, pos
        data = b"".join(pending)
        cut = len(data) if final and not hold_partial else data.rfind(b"\n") + 1
        whole, rest = data[:cut], data[cut:]
        pending, size = ([rest], len(rest)) if rest else ([], 0)
        if whole:
            n = whole.count(b"\n") + (0 if whole.endswith(b"\n") else 1)
            pos += len(whole)
            yield Chunk(name, line_no, whole, n, stop=pos)
            line_no += n

    try:
        for block in _raw_blocks(path, min(_RAW_BLOCK, batch_bytes)):
            if skip:  # resuming: the content an earlier run read
                dropped = min(skip, len(block))
                block, skip = block[dropped:], skip - dropped
                if not block:
                    continue
            pending.append(block)
            size += len(block)
            if size >= batch_bytes:
                yield from emit(final=False)
    except TruncatedGzip as exc:
        if problems is not None:
            problems.append(SourceProblem(name, f"{exc}; kept the lines before it"))
    yield from emit(final=True)
