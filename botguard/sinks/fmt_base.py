"""What every export format shares: the format record, the view a renderer gets, safe text.

Renderers are plain functions from an :class:`ExportView` (addresses already validated,
normalized, deduplicated, sorted and capped by :mod:`botguard.sinks.export`) to bytes. Keeping
validation out of the renderers means a new format cannot forget it; keeping the text
sanitizers here means every format that writes a comment uses the same, conservative rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import polars as pl

#: How a format reduces overlapping networks before writing them.
#: ``none`` keeps every distinct entry (data exports), ``cover`` drops entries already inside a
#: wider one (same effect, and nft interval sets refuse overlaps), ``collapse`` merges to the
#: fewest networks.
Reduce = Literal["none", "cover", "collapse"]

Rendered = bytes | dict[str, bytes]

# Characters a comment may keep. Everything else becomes "_": no quotes, no ";{}" or "\",
# no "$" (nginx variables), no backticks; so a reason can never end a comment or a statement.
_COMMENT_UNSAFE = r"[^A-Za-z0-9 _.,:/=+()\[\]<>%@#!?*-]"
# Control, format (bidi overrides), surrogate, private-use and unassigned code points, and line
# or paragraph separators: nothing a log line should smuggle into a file someone will read.
_CONTROL = r"[\p{C}\p{Zl}\p{Zp}]"

MAX_REASON_CHARS = 120
MAX_REASONS = 16


@dataclass(frozen=True)
class ExportView:
    """What a renderer receives.

    ``entries`` has the block-entries columns with ``entry`` canonical (hosts bare, networks as
    CIDR), reasons already cleaned, plus ``family`` (4 or 6), ``prefix`` and ``cidr`` (the entry
    with an explicit prefix length, for tools that want one). Rows are in output order.
    ``header`` holds the comment lines without their comment marker.
    """

    name: str
    entries: pl.DataFrame
    header: tuple[str, ...]
    generator: str
    generated_at: datetime
    config_hash: str | None


@dataclass(frozen=True)
class ExportFormat:
    """One registered export format and the constraints its target tool imposes."""

    name: str
    render: Callable[[ExportView], Rendered]
    description: str
    suffix: str
    reduce: Reduce = "cover"
    comments: bool = True
    #: Whether the renderer writes score, reasons and times (they are then cleaned first).
    details: bool = False
    #: Whether a tool acts on the list (only ``action == "block"`` rows go in); the data
    #: exports set this to False and carry every row.
    enforces: bool = True
    families: frozenset[int] = frozenset({4, 6})
    #: Narrowest prefix the target accepts per family; narrower entries are widened to it
    #: (Cloudflare lists take IPv6 no narrower than /64).
    max_prefix: Mapping[int, int] = field(default_factory=dict)
    #: Widest prefix the target accepts per family; wider networks are skipped.
    min_prefix: Mapping[int, int] = field(default_factory=dict)
    #: A hard size limit of the target (AWS WAF IP sets, Cloudflare lists).
    limit: int | None = None
    limit_per_family: bool = False
    #: Lines explaining how to load the file; go into the header.
    notes: tuple[str, ...] = ()


def iso_utc(ts: datetime) -> str:
    """A fixed ISO 8601 UTC spelling so headers are byte-stable (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    spec = "microseconds" if ts.microsecond else "seconds"
    return ts.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def clean_expr(expr: pl.Expr, max_chars: int = MAX_REASON_CHARS) -> pl.Expr:
    """Vectorized: control characters to spaces, whitespace collapsed, bounded length."""
    return (
        expr.str.replace_all(_CONTROL, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .str.slice(0, max_chars)
    )


def comment_expr(expr: pl.Expr, max_chars: int = MAX_REASON_CHARS) -> pl.Expr:
    """Vectorized text safe inside a ``#`` comment or a JSON comment field of a WAF."""
    return clean_expr(expr, max_chars).str.replace_all(_COMMENT_UNSAFE, "_")


def comment_text(value: str, max_chars: int = MAX_REASON_CHARS) -> str:
    """Scalar :func:`comment_expr` for header values (config hash, notes)."""
    out = pl.select(comment_expr(pl.lit(value, dtype=pl.String), max_chars)).item()
    return str(out or "")


def comment_block(header: tuple[str, ...], marker: str = "#") -> str:
    """Header lines as comments, each already safe (see :func:`header_lines`)."""
    return "".join(f"{marker} {line}\n" if line else f"{marker}\n" for line in header)


def header_lines(
    fmt: ExportFormat,
    *,
    version: str,
    generated_at: datetime,
    count: int,
    config_hash: str | None,
    extra: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Generator, time, count and config hash: what an operator needs to trace a file back."""
    lines = [
        f"generated by botguard {version}, format {fmt.name}: {fmt.description}",
        f"generated_at: {iso_utc(generated_at)}",
        f"entries: {count}",
    ]
    if config_hash:
        lines.append(f"config: {comment_text(config_hash, 80)}")
    # Notes are constants from this package (trusted); only refuse anything that ends a line.
    for note in (*fmt.notes, *extra):
        if "\n" in note or "\r" in note:
            raise ValueError(f"header note must be one line: {note!r}")
        lines.append(note)
    return tuple(lines)


def text_lines(lines: list[str], header: tuple[str, ...], footer: str = "") -> bytes:
    """Header comment, then one line each, newline-terminated; ASCII only by construction."""
    body = "".join(f"{line}\n" for line in lines)
    return (comment_block(header) + body + footer).encode("ascii")
