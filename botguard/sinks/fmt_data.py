"""Data exports (CSV and JSON) with every column, for analysts and other tools.

These keep each distinct entry (no merging of overlapping networks) so the reasons and counts
stay attached to what was actually decided.
"""

from __future__ import annotations

import json

import polars as pl

from botguard.sinks.fmt_base import ExportFormat, ExportView, iso_utc

COLUMNS = ("entry", "action", "score", "reasons", "clients", "first_seen", "last_seen", "expires")
_TS = "%Y-%m-%dT%H:%M:%S%.fZ"
REASON_SEPARATOR = "|"


def _defuse_formula(expr: pl.Expr) -> pl.Expr:
    """Spreadsheets run cells starting with = + - @ as formulas; quote them as text."""
    return pl.when(expr.str.contains(r"^[=+\-@]")).then(pl.lit("'") + expr).otherwise(expr)


def _timestamps() -> list[pl.Expr]:
    return [pl.col(c).dt.to_string(_TS) for c in ("first_seen", "last_seen", "expires")]


def render_csv(view: ExportView) -> bytes:
    """RFC 4180 CSV with a header row; reasons joined by ``|`` (a ``|`` inside one becomes /)."""
    reasons = pl.col("reasons")
    flat = view.entries["reasons"].explode().drop_nulls()
    if flat.str.contains(REASON_SEPARATOR, literal=True).any():
        reasons = reasons.list.eval(
            pl.element().str.replace_all(REASON_SEPARATOR, "/", literal=True)
        )
    reasons = reasons.list.join(REASON_SEPARATOR)
    frame = view.entries.select(
        "entry",
        _defuse_formula(pl.col("action")).alias("action"),
        "score",
        _defuse_formula(reasons).alias("reasons"),
        "clients",
        *_timestamps(),
    )
    return frame.write_csv(line_terminator="\n").encode("utf-8")


def render_json(view: ExportView) -> bytes:
    """One JSON document: provenance fields, then ``entries``, one entry object a line."""
    head = {
        "generator": view.generator,
        "format": view.name,
        "generated_at": iso_utc(view.generated_at),
        "config_hash": view.config_hash,
        "count": view.entries.height,
    }
    frame = view.entries.select(*COLUMNS[:5], *_timestamps())
    objects = pl.struct(pl.all()).struct.json_encode().str.join(",\n")
    body = frame.select(objects).item() if frame.height else ""
    prefix = json.dumps(head, ensure_ascii=True)[:-1] + ', "entries": ['
    return (prefix + ("\n" + body + "\n" if body else "") + "]}\n").encode("utf-8")


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "csv",
        render_csv,
        "CSV with every column",
        ".csv",
        reduce="none",
        comments=False,
        details=True,
        enforces=False,
    ),
    ExportFormat(
        "json",
        render_json,
        "JSON with every column",
        ".json",
        reduce="none",
        comments=False,
        details=True,
        enforces=False,
    ),
)
