"""JSON lines (CDN and load-balancer logs, app logs): one object per line, with a map from
hits columns to JSON keys.

Objects are decoded by Polars' NDJSON reader, once per line, against a schema built from the
field map: every wanted value comes back as text (numbers and booleans as written, nested
values as JSON), so ``normalize.finish`` types them like any other captured field. A key
``a.b`` is looked up both as a literal key (flattened logs write ``"url.original"``) and as
the path a → b (nested logs); keys such as ``@timestamp`` need no escaping. Where a parent
is not an object on some line (``"url": "/x"`` beside ``"url.path"``), that line is read
flat: top-level values as text, the nested ones looked up in it. ``a|b`` takes
the first of several keys that is present (Caddy moved the client address from
``request.remote_ip`` to ``request.client_ip``). A value that is an array of strings gives
its first element: Caddy and others log each header as a list.

A chunk whose every line is a JSON object is read straight from its bytes. Otherwise the
line path decodes the object lines and sets aside the ones the reader refuses, so
broken lines cost one tolerant pass and one more read, not a slower parser for the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import polars as pl

from botguard.parsers.normalize import finish, with_line_text
from botguard.sources.files import Chunk

#: Hits column → the capture name ``normalize.finish`` reads it from.
_JSON_TO_CAPTURE = {
    "client_ip": "remote_addr",
    "method": "request_method",
    "path": "request_uri",
    "query": "args",
    "request": "request",
    "protocol": "server_protocol",
    "host": "host",
    "status": "status",
    "bytes": "bytes_sent",
    "referer": "http_referer",
    "user_agent": "http_user_agent",
    "request_time_s": "request_time",
    "x_forwarded_for": "http_x_forwarded_for",
    "session_id": "session",
    "tls_fingerprint": "tls",
}


#: Value columns are named with this prefix, so a JSON key such as ``line`` or ``source``
#: cannot collide with the line columns beside them.
_P = "\x00json:"


@dataclass(frozen=True)
class _Plan:
    """How to read the wanted keys: a schema with nested objects as structs (``nested``; None
    when a key is wanted both as a value and as a parent) and, for lines where a parent is
    not an object, a flat schema of top-level keys as text, the nested values then looked up
    in that text."""

    keys: list[str]
    nested: tuple[dict[str, pl.DataType], dict[str, pl.Expr]] | None
    flat: tuple[dict[str, pl.DataType], dict[str, pl.Expr]]


def _either(found: list[pl.Expr]) -> pl.Expr:
    return pl.coalesce(found) if len(found) > 1 else (found[0] if found else pl.lit(None, pl.String))


def _quoted(part: str) -> str:
    return "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _plan(keys: list[str]) -> _Plan:
    tree: dict[str, Any] = {}  # nested dicts; a leaf is None
    conflict = False
    for key in keys:
        tree.setdefault(key, None)  # the literal key, dots and all
    for key in keys:
        parts = key.split(".")
        if len(parts) < 2:
            continue
        node = tree
        for part in parts[:-1]:
            if part in node and not isinstance(node[part], dict):
                conflict = True  # wanted as a value too: only the flat reading serves both
                break
            node = node.setdefault(part, {})
        else:
            if isinstance(node.get(parts[-1]), dict):
                conflict = True
            else:
                node[parts[-1]] = None

    def dtype(node: Any) -> pl.DataType:
        return pl.String() if node is None else pl.Struct({k: dtype(v) for k, v in node.items()})

    def struct_path(parts: list[str]) -> pl.Expr | None:
        node: Any = tree
        expr: pl.Expr | None = None
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return None
            expr = pl.col(_P + part) if expr is None else expr.struct.field(part)
            node = node[part]
        return expr if node is None else None

    nested = None
    if not conflict:
        values = {}
        for key in keys:
            literal = pl.col(_P + key) if tree.get(key, {}) is None else None
            path = struct_path(key.split(".")) if "." in key else None
            values[key] = _either([e for e in (literal, path) if e is not None])
        nested = ({k: dtype(v) for k, v in tree.items()}, values)
    tops = sorted({*keys, *(k.split(".")[0] for k in keys)})
    flat_values = {}
    for key in keys:
        found = [pl.col(_P + key)]
        if "." in key:
            first, *rest = key.split(".")
            found.append(pl.col(_P + first).str.json_path_match("$" + "".join(_quoted(p) for p in rest)))
        flat_values[key] = _either(found)
    return _Plan(keys, nested, ({t: pl.String() for t in tops}, flat_values))


def _alternatives(spec: str) -> list[str]:
    return [k.strip() for k in spec.split("|") if k.strip()]


def _value(spec: str) -> pl.Expr:
    """The text of ``spec`` (``key`` or ``key|other|…``); an array of strings gives its first."""
    found = [pl.col(_P + k) for k in _alternatives(spec)]
    v = pl.coalesce(found) if len(found) > 1 else found[0]
    listed = (v.str.starts_with('["') & v.str.ends_with('"]')) | (v == "[]")
    return pl.when(listed).then(v.str.json_path_match("$[0]")).otherwise(v)


def _nulls(plan: _Plan, n: int) -> pl.DataFrame:
    return pl.DataFrame({_P + k: pl.Series([None] * n, dtype=pl.String) for k in plan.keys})


def _read(data: bytes, plan: _Plan, n_rows: int) -> pl.DataFrame | None:
    """The wanted values (one text column per key) of the objects in ``data``, or None unless
    every one of its ``n_rows`` lines is one (the reader skips blank lines and refuses
    anything but objects). The nested reading is tried first, the flat one when it fails."""
    for way in (plan.nested, plan.flat):
        if way is None:
            continue
        schema, values = way
        try:
            frame = pl.read_ndjson(data, schema=schema)
        except pl.exceptions.PolarsError:
            continue
        if len(frame) != n_rows:
            return None
        return frame.rename(lambda c: _P + c).select(values[k].alias(_P + k) for k in plan.keys)
    return None


def _joined(texts: pl.Series) -> bytes:
    text: str = texts.str.join("\n").item()
    return (text + "\n").encode("utf-8")


#: Lines per block when a chunk holds a line the reader refuses: blocks are read one by one
#: and only in a refused block are the broken lines looked for.
_BLOCK_LINES = 4096


def _read_tolerant(texts: pl.Series, plan: _Plan, *, whole: bool = True) -> pl.DataFrame:
    """One row per text; a text the reader refuses gets a row of nulls."""
    if texts.is_empty():
        return _nulls(plan, 0)
    frame = _read(_joined(texts), plan, len(texts)) if whole else None
    if frame is not None:
        return frame
    out = []
    for start in range(0, len(texts), _BLOCK_LINES):
        block = texts.slice(start, _BLOCK_LINES)
        frame = _read(_joined(block), plan, len(block)) if len(texts) > _BLOCK_LINES else None
        out.append(frame if frame is not None else _read_refused_block(block, plan))
    return pl.concat(out)


def _read_refused_block(block: pl.Series, plan: _Plan) -> pl.DataFrame:
    """A tolerant JSON pass (one vectorized call) names the suspects; the rest is read at
    once, the suspects on their own. The tolerant parser refuses a few texts the reader
    takes (lone surrogate escapes, deep nesting), so a suspect is rejected only if the
    reader refuses it too: whether a line parses never depends on its neighbours."""
    valid = block.str.json_path_match("$").is_not_null()
    if not valid.all():
        suspects = (~valid).arg_true()
        empty = pl.Series([r"{}"] * len(block), dtype=pl.String)
        frame = _read(_joined(block.zip_with(valid, empty)), plan, len(block))
        if frame is not None:
            alone = _halved(block.gather(suspects), plan)
            return frame.with_columns(frame[c].scatter(suspects, alone[c]) for c in frame.columns)
    return _halved(block, plan)


def _halved(texts: pl.Series, plan: _Plan) -> pl.DataFrame:
    frame = _read(_joined(texts), plan, len(texts))
    if frame is not None:
        return frame
    if len(texts) == 1:
        return _nulls(plan, 1)
    half = len(texts) // 2
    return pl.concat([_halved(texts.slice(0, half), plan), _halved(texts.slice(half), plan)])


def _is_object(line: pl.Expr) -> pl.Expr:
    return line.str.strip_chars_start().str.starts_with("{").fill_null(False)


@dataclass(frozen=True)
class JsonLinesParser:
    """JSON objects one per line, with a map from hits columns to (dotted) JSON keys."""

    #: Keeps nothing from one chunk to the next: chunks may be parsed side by side.
    stateless: ClassVar[bool] = True

    name: str
    fields_map: dict[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return list(self.fields_map)

    @cached_property
    def _plan(self) -> _Plan:
        return _plan(sorted({k for spec in self.fields_map.values() for k in _alternatives(spec)}))

    def _captures(self) -> list[pl.Expr]:
        exprs = []
        for col, spec in self.fields_map.items():
            cap = _JSON_TO_CAPTURE.get(col)
            if cap:
                exprs.append(_value(spec).alias(cap))
        ts_spec = self.fields_map.get("ts")
        if ts_spec:
            # Epoch numbers (s, ms, µs, ns) and ISO 8601 text.
            t = _value(ts_spec)
            numeric = t.str.contains(r"^\d+(?:\.\d+)?$")
            exprs += [
                pl.when(numeric).then(None).otherwise(t).alias("time_iso8601"),
                pl.when(numeric).then(t).otherwise(None).alias("msec"),
            ]
        return exprs

    def parse_bytes(self, chunk: Chunk, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """Straight from bytes when every line of the chunk is a JSON object, else by lines;
        None only for what the line path must decode first (CRLF, invalid UTF-8)."""
        if not chunk.size or chunk.find(b"\r"):
            return None
        first = chunk.first_line_no
        line_no = pl.int_range(first, first + chunk.n_lines, dtype=pl.Int64).alias("line_no")
        frame = _read(chunk.data, self._plan, chunk.n_lines)
        if frame is None:
            try:
                lines = pl.read_lines(chunk.data)
            except pl.exceptions.PolarsError:
                return None
            if len(lines) != chunk.n_lines:
                return None
            return self._parse_lines(lines.with_columns(line_no, pl.lit(chunk.source).alias("source")), default_tz, whole=False)
        raw = frame.lazy().select(
            *self._captures(), line_no, pl.lit(chunk.source).alias("source"),
            pl.lit(None, pl.String).alias("line"), pl.lit(True).alias("_matched"),
        )
        hits, rejects = finish(raw, default_tz)
        if len(rejects):
            rejects = with_line_text(rejects, pl.read_lines(chunk.data).with_columns(line_no))
        return hits, rejects

    def could_parse(self, lines: pl.DataFrame) -> int:
        """How many of ``lines`` look like a JSON object: only those can become hits."""
        return int(lines.select(_is_object(pl.col("line")).sum()).item() or 0)

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        return self._parse_lines(lines.collect(), default_tz, whole=True)

    def _parse_lines(self, df: pl.DataFrame, default_tz: str, *, whole: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``whole``: try the lines in one read first (False when that read already failed)."""
        # A line is a candidate if it looks like an object; those the reader refuses anyway
        # come back as rows of nulls and are rejected for their missing fields.
        is_object = df.select(_is_object(pl.col("line"))).to_series()
        texts = df.select(pl.when(is_object).then(pl.col("line")).otherwise(pl.lit("{}"))).to_series()
        # Lines set aside as "{}" may have been all that the reader refused.
        decoded = _read_tolerant(texts, self._plan, whole=whole or not is_object.all())
        raw = pl.concat([df.select("line", "line_no", "source"), decoded], how="horizontal").lazy().select(
            *self._captures(), "line", "line_no", "source", is_object.alias("_matched"),
        )
        return finish(raw, default_tz)
