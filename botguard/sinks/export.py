"""Blocklist exports: validate, normalize, sort, reduce, cap, render, write atomically.

The flow for one format is ``normalize`` (re-validate every entry, canonical text, numeric
order, duplicates merged) -> ``fit`` (what the target can express) -> ``reduce`` (drop covered
or collapse) -> ``cap`` -> the format's renderer -> :func:`atomic_write`. Every step is
deterministic and the header time is the caller's ``generated_at``, so the same input gives
the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from botguard import __version__
from botguard.schema import BLOCK_ENTRIES_SCHEMA, conform
from botguard.sinks.atomic import atomic_write
from botguard.sinks.fmt_base import (
    MAX_REASONS,
    ExportFormat,
    ExportView,
    Rendered,
    clean_expr,
    header_lines,
)
from botguard.sinks.fmt_networks import (
    ADDRESS,
    InvalidNetworkError,
    Normalized,
    ParsedNetwork,
    as_entries,
    collapse,
    cover,
    normalize,
    parse_network,
    widen,
)
from botguard.sinks.formats import FORMATS, UnknownFormatError, get_format

__all__ = [
    "FORMATS",
    "InvalidNetworkError",
    "ParsedNetwork",
    "PreparedEntries",
    "RenderResult",
    "UnknownFormatError",
    "atomic_write",
    "diff_entries",
    "output_paths",
    "parse_network",
    "prepare",
    "read_plain",
    "render",
    "write_export",
]


@dataclass(frozen=True)
class RenderResult:
    """What a render produced and what it left out, so the caller can report it.

    ``data`` is bytes, or a mapping of file key to bytes for formats that write several files
    (``aws-waf``: ``ipv4`` and ``ipv6``). ``over_cap`` holds the networks ``max_entries`` (or
    the target's own limit) left out, after collapsing. ``skipped_unsupported`` counts valid
    entries the target cannot express (IPv6 in iptables, networks wider than a WAF accepts).
    """

    format: str
    data: Rendered
    written: int
    dropped_invalid: int
    dropped_over_cap: int
    skipped_unsupported: int
    invalid_examples: tuple[str, ...]
    over_cap: pl.DataFrame
    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class PreparedEntries:
    """Entries validated once, so several formats render without redoing shared work.

    Holds the normalized frame and, filled on first use, its covered and collapsed forms
    (most formats need one of them, and computing them is most of a render's cost).
    """

    normalized: Normalized
    _reduced: dict[tuple[str, bool], pl.DataFrame] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def base(self, block_only: bool) -> pl.DataFrame:
        frame = self.normalized.frame
        return frame.filter(pl.col("action") == "block") if block_only else frame

    def reduced(self, how: str, block_only: bool) -> pl.DataFrame:
        key = (how, block_only)
        if key not in self._reduced:
            self._reduced[key] = _reduce(self.base(block_only), how)
        return self._reduced[key]


def prepare(entries: pl.DataFrame | PreparedEntries) -> PreparedEntries:
    """Validate and normalize entries once; pass the result to :func:`render` for each format."""
    if isinstance(entries, PreparedEntries):
        return entries
    return PreparedEntries(normalize(entries))


# --------------------------------------------------------------------------- steps
def _fit_and_reduce(prepared: PreparedEntries, spec: ExportFormat) -> tuple[pl.DataFrame, int]:
    """Keep what the target can express, reduce; count what was skipped.

    Enforcing formats (everything but the data exports) keep only ``action == "block"`` rows:
    a row meant for another action must never end up in a deny list. Covering and collapsing
    never cross families, so for targets without prefix limits the shared reduced frame is
    filtered instead of reducing again.
    """
    total = prepared.normalized.frame.height
    block_only = spec.enforces
    frame = prepared.base(block_only)
    family_ok = pl.col("family").is_in(sorted(spec.families))
    if not spec.min_prefix and not spec.max_prefix:
        skipped = total - frame.filter(family_ok).height
        return prepared.reduced(spec.reduce, block_only).filter(family_ok), skipped
    keep = family_ok
    for family, lowest in spec.min_prefix.items():
        keep &= (pl.col("family") != family) | (pl.col("prefix") >= lowest)
    fitted = frame.filter(keep)
    return _reduce(widen(fitted, spec.max_prefix), spec.reduce), total - fitted.height


def _reduce(df: pl.DataFrame, how: str) -> pl.DataFrame:
    if how == "cover":
        return cover(df)
    if how == "collapse":
        return collapse(df)
    return df


def _cap(df: pl.DataFrame, limit: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Collapse first (no coverage lost), then keep the highest-priority networks.

    Priority is score, then clients, then address, so the choice is deterministic.
    """
    if df.height <= limit:
        return df, df.clear()
    df = collapse(df)
    if df.height <= limit:
        return df, df.clear()
    ranked = df.sort(
        ["score", "clients", *ADDRESS],
        descending=[True, True, False, False, False],
        nulls_last=True,
    )
    return ranked.head(limit).sort(ADDRESS), ranked.slice(limit)


def _apply_caps(
    df: pl.DataFrame, spec: ExportFormat, max_entries: int | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The caller's ``max_entries`` over the whole output, then the target's own limit."""
    dropped = [df.clear()]
    if max_entries is not None:
        df, out = _cap(df, max_entries)
        dropped.append(out)
    if spec.limit is not None and spec.limit_per_family:
        parts = [_cap(df.filter(pl.col("family") == f), spec.limit) for f in (4, 6)]
        df = pl.concat([kept for kept, _ in parts])
        dropped.extend(out for _, out in parts)
    elif spec.limit is not None:
        df, out = _cap(df, spec.limit)
        dropped.append(out)
    return df, pl.concat(dropped)


def _clean_reasons(df: pl.DataFrame) -> pl.DataFrame:
    """Reasons as safe text: no control characters, bounded length and count, none empty.

    Cleaning runs on the distinct reason strings only (reasons repeat a lot), and not at all
    when nothing needs it.
    """
    flat = df["reasons"].explode().drop_nulls().unique()
    cleaned = pl.select(clean_expr(pl.lit(flat))).to_series()
    too_many = (df["reasons"].list.len() > MAX_REASONS).any()
    null_items = df["reasons"].list.eval(pl.element().is_null()).list.any().any()
    if not too_many and not null_items and (flat == cleaned).all() and not (cleaned == "").any():
        return df
    reasons = (
        pl.col("reasons")
        .list.eval(pl.element().replace_strict(flat, cleaned, return_dtype=pl.String))
        .list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
        .list.unique(maintain_order=True)
        .list.head(MAX_REASONS)
    )
    return df.with_columns(reasons=reasons)


def _view_frame(df: pl.DataFrame, details: bool) -> pl.DataFrame:
    """Add ``cidr``; for formats that write details, make reasons and action safe text."""
    host = pl.when(pl.col("family") == 4).then(pl.lit("/32")).otherwise(pl.lit("/128"))
    cidr = (
        pl.when(pl.col("entry").str.contains("/", literal=True))
        .then(pl.col("entry"))
        .otherwise(pl.col("entry") + host)
    )
    if not details:
        return df.with_columns(cidr=cidr)
    return _clean_reasons(df).with_columns(cidr=cidr, action=clean_expr(pl.col("action"), 32))


# --------------------------------------------------------------------------- API
def render(
    entries: pl.DataFrame | PreparedEntries,
    fmt: str,
    *,
    generated_at: datetime,
    max_entries: int | None = None,
    config_hash: str | None = None,
) -> RenderResult:
    """Render ``entries`` (block-entries schema, or :func:`prepare`'d) in format ``fmt``.

    ``generated_at`` is data time for the header (never the wall clock) so reruns are
    byte-identical. ``max_entries`` caps the number of networks written: networks are
    collapsed first, then the highest score (then clients, then address) are kept.
    """
    spec = get_format(fmt)
    if max_entries is not None and max_entries < 0:
        raise ValueError(f"max_entries must be >= 0, got {max_entries}")
    prepared = prepare(entries)
    normalized = prepared.normalized
    work, skipped = _fit_and_reduce(prepared, spec)
    work, over = _apply_caps(work, spec, max_entries)
    view = ExportView(
        name=spec.name,
        entries=_view_frame(work, spec.details),
        header=header_lines(
            spec,
            version=__version__,
            generated_at=generated_at,
            count=work.height,
            config_hash=config_hash,
        ),
        generator=f"botguard {__version__}",
        generated_at=generated_at,
        config_hash=config_hash,
    )
    return RenderResult(
        format=spec.name,
        data=spec.render(view),
        written=work.height,
        dropped_invalid=normalized.invalid_rows,
        dropped_over_cap=over.height,
        skipped_unsupported=skipped,
        invalid_examples=normalized.invalid_examples,
        over_cap=as_entries(over),
    )


def output_paths(output: Path, data: Rendered) -> dict[Path, bytes]:
    """Where each file of a render goes: ``out.json`` -> ``out.ipv4.json``, ``out.ipv6.json``."""
    output = Path(output)
    if isinstance(data, bytes):
        return {output: data}
    return {
        output.with_name(f"{output.stem}.{key}{output.suffix}"): blob
        for key, blob in sorted(data.items())
    }


def write_export(
    entries: pl.DataFrame | PreparedEntries,
    fmt: str,
    output: Path,
    *,
    generated_at: datetime,
    max_entries: int | None = None,
    config_hash: str | None = None,
) -> RenderResult:
    """Render and write atomically: a reader sees the old file or the new one, never half.

    Multi-file formats write each file atomically (see :func:`output_paths`).
    """
    result = render(
        entries, fmt, generated_at=generated_at, max_entries=max_entries, config_hash=config_hash
    )
    files = output_paths(output, result.data)
    for path, blob in files.items():
        atomic_write(path, blob)
    return dataclasses.replace(result, paths=tuple(files))


def diff_entries(
    previous: pl.DataFrame, current: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Entries added and removed between two lists, compared as normalized networks.

    Invalid values on either side are ignored (they were never written). Both results are
    in the block-entries schema, in address order.
    """
    prev = normalize(previous).frame
    cur = normalize(current).frame
    added = cur.join(prev.select(ADDRESS), on=ADDRESS, how="anti", maintain_order="left")
    removed = prev.join(cur.select(ADDRESS), on=ADDRESS, how="anti", maintain_order="left")
    return as_entries(added), as_entries(removed)


def read_plain(path: Path | str) -> pl.DataFrame:
    """Read a ``plain`` or ``cidr`` export back as block entries (for ``--diff PREVIOUS``).

    Comments (``#`` to end of line) and blank lines are skipped; any other line must be an
    address or network, else the error names the file and line.
    """
    path = Path(path)
    entries: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                entries.append(parse_network(text).text)
            except InvalidNetworkError as exc:
                raise InvalidNetworkError(f"{path}:{line_no}: {exc}") from None
    frame = pl.DataFrame({"entry": entries, "action": ["block"] * len(entries)})
    return conform(frame, BLOCK_ENTRIES_SCHEMA)
