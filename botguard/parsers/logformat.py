"""nginx ``log_format`` strings → regex parsers; combined, common and vcombined are defined so.

Each format compiles to two regexes: a fast one (fields cannot contain their delimiter) that
the Rust regex engine runs in a single pass, and a tolerant one (escaped quotes, trailing
fields missing, extra spaces) that only sees the lines the fast one missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from botguard.parsers.normalize import finish

_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")

#: nginx variable → the capture name ``normalize.finish`` understands (None = skip).
_TARGET: dict[str, str | None] = {
    "remote_addr": "remote_addr",
    "realip_remote_addr": "remote_addr",
    "http_x_real_ip": "remote_addr",
    "binary_remote_addr": None,
    "time_local": "time_local",
    "time_iso8601": "time_iso8601",
    "msec": "msec",
    "request": "request",
    "request_method": "request_method",
    "request_uri": "request_uri",
    "uri": "uri",
    "document_uri": "uri",
    "args": "args",
    "query_string": "args",
    "server_protocol": "server_protocol",
    "status": "status",
    "body_bytes_sent": "body_bytes_sent",
    "bytes_sent": "bytes_sent",
    "http_referer": "http_referer",
    "http_user_agent": "http_user_agent",
    "host": "host",
    "http_host": "host",
    "server_name": "host",
    "request_time": "request_time",
    "http_x_forwarded_for": "http_x_forwarded_for",
    "ssl_ja3": "tls",
    "ssl_ja3_hash": "tls",
    "http_ja3": "tls",
    "http_x_ja3": "tls",
    "ssl_ja4": "tls",
    "http_ja4": "tls",
    "http_x_ja4": "tls",
    "session_id": "session",
    "http_x_session_id": "session",
}

BUILTIN_FORMATS: dict[str, str] = {
    "combined": '$remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"',
    "common": '$remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent',
    "vcombined": '$host:$_port $remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"',
}


def _target(var: str) -> str | None:
    if var in _TARGET:
        return _TARGET[var]
    if var.startswith("cookie_"):
        return "session"
    return None


@dataclass(frozen=True)
class _Piece:
    literal: str | None = None
    var: str | None = None


def _tokenize(fmt: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        if m.start() > pos:
            pieces.append(_Piece(literal=fmt[pos : m.start()]))
        pieces.append(_Piece(var=m.group(1)))
        pos = m.end()
    if pos < len(fmt):
        pieces.append(_Piece(literal=fmt[pos:]))
    return pieces


def _compile(fmt: str, tolerant: bool) -> tuple[str, list[str]]:
    """Regex text and the capture names in group order."""
    pieces = _tokenize(fmt)
    names: list[str] = []
    parts: list[str] = []
    seen: set[str] = set()
    for i, piece in enumerate(pieces):
        if piece.literal is not None:
            lit = piece.literal
            if tolerant:
                parts.append(re.sub(r"(?:\\ )+", " +", re.escape(lit)))
            else:
                parts.append(re.escape(lit))
            continue
        assert piece.var is not None
        nxt = pieces[i + 1].literal if i + 1 < len(pieces) else None
        prev = pieces[i - 1].literal if i > 0 else None
        term = nxt[0] if nxt else None
        quoted = term == '"' and prev is not None and prev.endswith('"')
        if quoted:
            frag = r'(?:[^"\\]|\\.)*' if tolerant else r'[^"]*'
        elif term is None:
            frag = r".*" if tolerant else r"[^ ]*"
        elif term == " ":
            # An unquoted field never starts with a quote: keeps a format with one more
            # bare field from swallowing the next quoted one.
            frag = r'(?:[^ "][^ ]*)?'
        else:
            frag = "[^" + re.escape(term) + "]*"
        target = _target(piece.var)
        if target is not None and target not in seen:
            seen.add(target)
            names.append(target)
            parts.append(f"({frag})")
        else:
            parts.append(f"(?:{frag})")
    if tolerant:
        # Trailing segments may be missing (common lines in a combined log): make everything
        # after the status field optional, one nested group per piece.
        status_idx = next(
            (k for k, p in enumerate(pieces) if p.var == "status"), None
        )
        if status_idx is not None and status_idx + 1 < len(parts):
            head, tail = parts[: status_idx + 1], parts[status_idx + 1 :]
            nested = ""
            for frag in reversed(tail):
                nested = f"(?:{frag}{nested})?"
            parts = [*head, nested]
        body = "".join(parts)
        return "^" + body + r"(?:[ \t].*)?$", names
    return "^" + "".join(parts) + r"(?:[ \t].*)?$", names


@dataclass(frozen=True)
class RegexLogParser:
    """A parser for one line-oriented format described by an nginx log_format string."""

    name: str
    log_format: str

    @property
    def fields(self) -> list[str]:
        return _compile(self.log_format, tolerant=False)[1]

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        fast, names = _compile(self.log_format, tolerant=False)
        slow, _ = _compile(self.log_format, tolerant=True)
        rename = {str(i): n for i, n in enumerate(names, start=1)}
        # One regex pass for the common case; the tolerant regex only sees the misses.
        first = (
            lines.with_columns(pl.col("line").str.extract_groups(fast).alias("_g"))
            .unnest("_g")
            .rename(rename)
            .with_columns(pl.col(names[0]).is_not_null().alias("_matched"))
            .collect()
        )
        # Apache writes \" and \\ inside quoted fields; unescape them on the (rare) lines that
        # have a backslash at all, so both regex paths give the same text.
        escaped = first.select(pl.col("line").str.contains("\\", literal=True)).to_series()
        if escaped.any():
            idx = escaped.arg_true()
            fixed = first[idx].select([pl.col(n).str.replace_all(r'\\(["\\])', "$1") for n in names])
            first = first.with_columns([first[n].scatter(idx, fixed[n]) for n in names])
        missed = first.filter(~pl.col("_matched"))
        if missed.is_empty():
            return finish(first.lazy(), default_tz)
        retry = (
            missed.lazy()
            .drop([*names, "_matched"])
            .with_columns(pl.col("line").str.extract_groups(slow).alias("_g"))
            .unnest("_g")
            .rename(rename)
            .with_columns(
                pl.col(names[0]).is_not_null().alias("_matched"),
                # Apache escapes quotes inside fields as \" ; undo it.
                *[pl.col(n).str.replace_all(r'\\(["\\])', "$1") for n in names],
            )
        )
        both = pl.concat(
            [first.lazy().filter(pl.col("_matched")), retry], how="diagonal"
        ).sort("line_no")
        return finish(both, default_tz)
