"""W3C extended log files: IIS's default log format, and anything else that names its columns
in a ``#Fields:`` directive.

The columns are whatever the last ``#Fields:`` line before a line says (IIS writes a new one
whenever it restarts, and an administrator may change them); before any, IIS's default
columns are assumed. The directive seen last is kept from one batch to the next. Values are
space separated, with spaces inside them written as ``+`` (user agents); times are UTC and
``time-taken`` is in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from botguard.parsers.normalize import finish

#: IIS's default W3C columns (IIS 8.5 and later).
IIS_DEFAULT_FIELDS = ["date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken"]

#: W3C column (lower case) → the capture name ``normalize.finish`` reads it from.
_CAPTURE = {
    "c-ip": "remote_addr",
    "cs-method": "request_method",
    "cs-uri-stem": "uri",
    "cs-uri-query": "args",
    "cs-version": "server_protocol",
    "sc-status": "status",
    "sc-bytes": "bytes_sent",
    "cs(referer)": "http_referer",
    "cs-host": "host",
    "cs(host)": "host",
    "x-forwarded-for": "http_x_forwarded_for",
    "cs(x-forwarded-for)": "http_x_forwarded_for",
}
_CAPTURES = sorted(set(_CAPTURE.values()) | {"time_iso8601", "request_time", "http_user_agent"})
_DIRECTIVE = "#Fields:"


@dataclass
class W3CParser:
    name: str = "w3c"
    #: Columns in force: from the last ``#Fields:`` line seen, in this batch or an earlier one.
    columns: list[str] = field(default_factory=lambda: list(IIS_DEFAULT_FIELDS))

    @property
    def fields(self) -> list[str]:
        return ["time_iso8601", "remote_addr", "request_method", "uri", "status"]

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        df = lines.collect()
        line = pl.col("line")
        directive = df.select(line.str.starts_with(_DIRECTIVE).fill_null(False)).to_series()
        segment = directive.cast(pl.Int32).cum_sum()
        layouts = [self.columns] + [
            text[len(_DIRECTIVE):].split() for text in df.filter(directive)["line"].to_list()
        ]
        self.columns = layouts[-1]
        parts = line.str.strip_chars().str.replace_all("\t", " ", literal=True).str.split(" ")
        raws = []
        for k, columns in enumerate(layouts):
            part = df.filter(segment == k)
            if len(part):
                raws.append(part.lazy().with_columns(parts.alias("_parts")).select(
                    *_captures(columns), "line", "line_no", "source",
                    (~line.str.starts_with("#").fill_null(False) & (pl.col("_parts").list.len() == len(columns))).alias("_matched"),
                ))
        if not raws:
            raws.append(df.lazy().select(
                *[pl.lit(None, pl.String).alias(c) for c in _CAPTURES], "line", "line_no", "source",
                pl.lit(False).alias("_matched"),
            ))
        return finish(pl.concat(raws), default_tz)


def _captures(columns: list[str]) -> list[pl.Expr]:
    index = {c.lower(): i for i, c in enumerate(columns)}

    def col(name: str) -> pl.Expr:
        i = index.get(name)
        return pl.lit(None, pl.String) if i is None else pl.col("_parts").list.get(i, null_on_oob=True)

    out: dict[str, pl.Expr] = {}
    for name, capture in _CAPTURE.items():
        if name in index or capture not in out:
            out[capture] = col(name)
    out["time_iso8601"] = col("date") + "T" + col("time") + "+00:00"
    taken = col("time-taken").cast(pl.Float64, strict=False)
    out["request_time"] = (taken / 1000).cast(pl.String)
    out["http_user_agent"] = col("cs(user-agent)").str.replace_all("+", " ", literal=True)
    return [out[c].alias(c) for c in _CAPTURES]
