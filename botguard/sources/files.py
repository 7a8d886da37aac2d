"""Log sources: files, globs, directories, gzip, stdin → bounded chunks of whole lines.

Chunks are raw bytes cut at a newline, so parsers can hand them to Polars in one call and
memory stays bounded by ``batch_bytes`` whatever the size of the log.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from botguard.errors import InputError

STDIN = "-"
_ROTATED = re.compile(r"^(?P<base>.+?)(?:\.(?P<num>\d+))?(?P<gz>\.gz)?$")
_DATED = re.compile(r"^(?P<base>.+?)[-.](?P<date>\d{8}(?:\d{2})?)(?P<gz>\.gz)?$")


@dataclass(frozen=True)
class Chunk:
    """Whole lines from one source; ``first_line_no`` is 1-based."""

    source: str
    first_line_no: int
    data: bytes
    n_lines: int


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


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, globs and directories → ordered list of file paths ('-' kept for stdin)."""
    out: list[str] = []
    for item in inputs:
        if item == STDIN:
            out.append(STDIN)
            continue
        if any(c in item for c in "*?["):
            matches = sorted(m for m in glob.glob(item) if os.path.isfile(m))
            if not matches:
                raise InputError(f"{item}: no file matches this pattern")
            out.extend(sorted(matches, key=_rotation_key))
            continue
        path = Path(item)
        if path.is_dir():
            files = [
                str(f) for f in sorted(path.iterdir())
                if f.is_file() and not f.name.startswith(".")
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
    # Rotated siblings given separately (access.log access.log.1) are still read oldest first.
    files = [p for p in out if p != STDIN]
    if len(files) > 1 and len(set(files)) == len(files):
        order = sorted(files, key=_rotation_key)
        it = iter(order)
        out = [p if p == STDIN else next(it) for p in out]
    return out


def _open(path: str) -> BinaryIO:
    if path == STDIN:
        return sys.stdin.buffer
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def read_chunks(
    path: str, batch_bytes: int, problems: list[SourceProblem] | None = None
) -> Iterator[Chunk]:
    """Yield chunks of whole lines. A truncated gzip is reported in ``problems``; the lines
    read before the damage are still yielded (the partial last line included, so the parser
    can count it)."""
    name = "<stdin>" if path == STDIN else path
    fh = _open(path)
    line_no = 1
    rest = b""
    try:
        while True:
            try:
                block = fh.read(batch_bytes)
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                msg = "truncated or corrupt gzip" if not isinstance(exc, OSError) or "gzip" in str(exc).lower() or isinstance(exc, EOFError) else str(exc)
                if problems is not None:
                    problems.append(SourceProblem(name, f"{msg}: {exc}; kept the lines before it"))
                block = b""
                if rest:
                    n = rest.count(b"\n") + 1
                    yield Chunk(name, line_no, rest, n)
                return
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            whole, rest = data[: cut + 1], data[cut + 1 :]
            n = whole.count(b"\n")
            yield Chunk(name, line_no, whole, n)
            line_no += n
        if rest:
            yield Chunk(name, line_no, rest, 1)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def head_lines(path: str, n: int) -> list[bytes]:
    """The first ``n`` lines (for format sniffing). Stdin cannot be rewound: callers buffer."""
    fh = _open(path)
    try:
        out = []
        for line in io.BufferedReader(fh) if not hasattr(fh, "readline") else fh:
            out.append(line.rstrip(b"\r\n"))
            if len(out) >= n:
                break
        return out
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return out
    finally:
        fh.close()
