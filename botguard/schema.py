"""Declared schemas for every boundary of the pipeline.

One place so that a stage can be tested alone against the frame it promises, and so that
analysts know which columns (with units in their names) they can rely on.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

#: The normalized hits frame: every parser produces exactly these columns.
#: Optional fields are always present and null when the log format lacks them.
HITS_SCHEMA: dict[str, pl.DataType] = {
    "ts": UTC_TS,
    "client_ip": pl.String(),  # validated and normalized (IPv6 compressed); null when the log has none
    "method": pl.String(),
    "path": pl.String(),
    "query": pl.String(),
    "protocol": pl.String(),
    "status": pl.Int16(),
    "bytes": pl.Int64(),
    "referer": pl.String(),
    "user_agent": pl.String(),
    "host": pl.String(),
    "request_time_s": pl.Float64(),
    "x_forwarded_for": pl.String(),
    "peer_ip": pl.String(),  # the connecting address when client_ip came from X-Forwarded-For
    "session_id": pl.String(),
    "tls_fingerprint": pl.String(),
    "source": pl.String(),
    "line_no": pl.Int64(),
}

#: Lines that did not parse, verbatim, with where they came from and why.
REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line_no": pl.Int64(),
    "reason": pl.String(),
    "line": pl.String(),
}

ACTIONS = ("block", "challenge", "monitor", "allow")

#: One row per client: what botguard decided and why.
DECISIONS_SCHEMA: dict[str, pl.DataType] = {
    "client": pl.String(),
    "ip": pl.String(),
    "action": pl.String(),
    "score": pl.Float64(),
    "reasons": pl.List(pl.String()),
    "kind": pl.String(),  # human | verified_crawler | good_bot | scraper | probe | ... (top evidence)
    "requests": pl.Int64(),
    "sessions": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "user_agent": pl.String(),
    "verified_crawler": pl.String(),
    "campaign": pl.String(),
}

#: What a blocklist sink receives: validated addresses or networks, one row each.
BLOCK_ENTRIES_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.String(),  # an IPv4/IPv6 address or CIDR, already validated
    "action": pl.String(),
    "score": pl.Float64(),
    "reasons": pl.List(pl.String()),
    "clients": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "expires": UTC_TS,
}


def empty(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def conform(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast to ``schema``, adding missing columns as nulls (order as declared)."""
    exprs = []
    for name, dtype in schema.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


def check(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> list[str]:
    """Differences between ``df`` and ``schema`` (empty list = conforms). Used by tests."""
    problems = []
    for name, dtype in schema.items():
        if name not in df.columns:
            problems.append(f"missing column {name}")
        elif df.schema[name] != dtype:
            problems.append(f"{name}: expected {dtype}, got {df.schema[name]}")
    extra = set(df.columns) - set(schema)
    if extra:
        problems.append(f"unexpected columns {sorted(extra)}")
    return problems
