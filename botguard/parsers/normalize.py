"""Raw captured strings → the typed hits frame (``schema.HITS_SCHEMA``) plus rejects.

Every parser captures strings under nginx variable names (``remote_addr``, ``time_local``,
``request``, …); this module is the one place that turns them into typed columns, validates
addresses and timestamps, and decides which lines are rejected and why.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import lru_cache

import polars as pl

from botguard.schema import HITS_SCHEMA, REJECTS_SCHEMA, UTC_TS

_V4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
_MISSING = ("", "-")
#: ``$time_local`` as its two space-separated halves: "10/Oct/2000:13:55:36" and "-0700".
SPLIT_DATE, SPLIT_ZONE = "_time_date", "_time_zone"
_TIME_COLUMNS = ("time_local", "time_iso8601", "msec", SPLIT_DATE, SPLIT_ZONE)
_ZONE = re.compile(r"([+-])([01]\d|2[0-3])([0-5]\d)")


@lru_cache(maxsize=1 << 18)
def normalize_ip(raw: str) -> str | None:
    """A validated, normalized address, or None. Strips ports and brackets ('[::1]:80')."""
    s = raw.strip()
    if not s:
        return None
    if s.startswith("["):
        end = s.find("]")
        s = s[1:end] if end > 0 else s
    elif s.count(":") == 1 and "." in s:  # IPv4 with a port (ALB client:port)
        s = s.split(":", 1)[0]
    if "%" in s:  # zone id
        s = s.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def normalize_ip_column(col: pl.Series, slow: Callable[[str], str | None] = normalize_ip) -> pl.Series:
    """Each value as ``slow`` (by default ``normalize_ip``) gives it, worked out once per
    distinct value: canonical dotted IPv4 (what most logs hold) is recognised by a strict
    pattern and kept as it is, the rest (IPv6, ports, garbage) goes through ``slow``. A batch
    has far fewer distinct addresses than lines, and when every value is already canonical
    the column comes back untouched."""
    distinct = col.drop_nulls().unique()
    other = distinct.filter(~distinct.str.contains(_V4)).to_list()
    mapping = {v: slow(v) for v in other}
    changed = {k: v for k, v in mapping.items() if v != k}
    if not changed:
        return col
    return col.replace(pl.Series(list(changed), dtype=pl.String), pl.Series(list(changed.values()), dtype=pl.String))


def resolve_forwarded(peer: str | None, xff: str | None, is_trusted: Callable[[str], bool]) -> str | None:
    """The right-most address in X-Forwarded-For that is not a trusted proxy, when the peer is
    trusted; otherwise the peer. Spoofed left-hand entries are never believed."""
    if peer is None or not is_trusted(peer) or not xff or xff == "-":
        return peer
    for part in reversed([p.strip() for p in xff.split(",")]):
        ip = normalize_ip(part)
        if ip is None:
            return peer  # garbage in the chain: fall back to what we know
        if not is_trusted(ip):
            return ip
    return peer


class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed, and the rewrite of ``client_ip`` it allows.

    Membership is looked up in one vectorized pass over the batch's distinct addresses (peers
    and every hop of every chain), so a published list of thousands of networks (a CDN's, a
    cloud's) costs no more than a handful; only the walk along each distinct (peer, chain)
    pair is Python.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        from botguard.iputil import NetworkIndex

        self.networks = list(networks)
        self.index = NetworkIndex.build([self.networks])

    def _trusted(self, addresses: Iterable[str]) -> set[str]:
        distinct = pl.Series("ip", list(set(addresses)), dtype=pl.String)
        return set(distinct.filter(self.index.lookup(distinct).is_not_null()).to_list())

    def apply(self, hits: pl.DataFrame) -> pl.DataFrame:
        if not self.networks or hits.is_empty():
            return hits
        pairs = hits.select("client_ip", "x_forwarded_for").unique()
        peers = pairs["client_ip"].to_list()
        chains = pairs["x_forwarded_for"].to_list()
        trusted = self._trusted(p for p in peers if p is not None)
        hops = {
            ip
            for peer, xff in zip(peers, chains, strict=True) if peer in trusted and xff
            for ip in map(normalize_ip, xff.split(",")) if ip is not None
        }
        trusted |= self._trusted(hops - trusted)
        resolved = [resolve_forwarded(p, x, trusted.__contains__) for p, x in zip(peers, chains, strict=True)]
        pairs = pairs.with_columns(pl.Series("_resolved", resolved, dtype=pl.String))
        out = hits.join(pairs, on=["client_ip", "x_forwarded_for"], how="left", nulls_equal=True)
        return out.with_columns(
            pl.when(pl.col("_resolved") != pl.col("client_ip"))
            .then(pl.col("client_ip"))
            .otherwise(pl.col("peer_ip"))
            .alias("peer_ip"),
            pl.col("_resolved").alias("client_ip"),
        ).drop("_resolved")


def _ts_exprs(cols: set[str], default_tz: str) -> list[pl.Expr]:
    """Timestamp parsers in order of preference; the first runs on every row, the others only
    on rows it left null (naive timestamps, odd ISO variants)."""
    out: list[pl.Expr] = []
    if "time_iso8601" in cols:
        c = pl.col("time_iso8601").str.replace(r"Z$", "+00:00")
        out.append(c.str.to_datetime(strict=False, cache=True, time_zone="UTC"))
        out.append(
            c.str.replace("T", " ", literal=True)
            .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, cache=True)
            .dt.replace_time_zone(default_tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
        if "time_local" not in cols and SPLIT_DATE not in cols:
            # JSON logs carry whatever text the server wrote: nginx's $time_local too.
            out.append(
                pl.col("time_iso8601").str.to_datetime("%d/%b/%Y:%H:%M:%S %z", strict=False, cache=True)
                .dt.convert_time_zone("UTC")
            )
    local: pl.Expr | None = pl.col("time_local") if "time_local" in cols else None
    if SPLIT_DATE in cols:
        # [$time_local] read as two space-separated fields (logformat's CSV path): the clock
        # alone, read as if UTC, is shifted by its zone once per distinct zone after the
        # collect (``_zoned``); joining the two texts on every line cost twice the parse.
        # The joined text is for the lines that do not read so.
        out.append(
            pl.col(SPLIT_DATE).str.to_datetime("%d/%b/%Y:%H:%M:%S", strict=False, cache=True)
            .dt.replace_time_zone("UTC")
        )
        local = pl.concat_str(pl.col(SPLIT_DATE), pl.col(SPLIT_ZONE), separator=" ")
    if local is not None:
        out.append(local.str.to_datetime("%d/%b/%Y:%H:%M:%S %z", strict=False, cache=True).dt.convert_time_zone("UTC"))
        out.append(
            local.str.to_datetime("%d/%b/%Y:%H:%M:%S", strict=False, cache=True)
            .dt.replace_time_zone(default_tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
    if "msec" in cols:
        # First when present: a format that has epoch numbers mostly has only those (JSON lines
        # split each value into msec or ISO text), and a cast is the cheapest parser.
        out.insert(0, epoch_to_ts(pl.col("msec")))
    return out or [pl.lit(None, dtype=UTC_TS)]


def _per_distinct(values: pl.Series, which: pl.Series, decode: Callable[[str], str]) -> pl.Series:
    """``values`` with ``decode`` applied to the rows ``which`` marks: once per distinct value,
    in Python (these are the rare rows), and nothing copied when no row is marked."""
    todo = values.filter(which.fill_null(False)).unique()
    return values.replace({v: decode(v) for v in todo.to_list()}) if len(todo) else values


def _decoded_agents(agents: pl.Series, escapes: bool) -> pl.Series:
    """Agents a CDN logged URL-encoded (Akamai: ``Mozilla%2F5.0%20(Windows…``) decoded, then
    nginx's ``\\xHH`` escapes (``_hex_decoded``); an agent with a real space was not encoded and
    stays as it is. Checked per distinct agent: a batch has few, and one ``unique`` costs a
    third of scanning every agent's text for each marker."""
    from urllib.parse import unquote

    distinct = agents.unique().drop_nulls()
    encoded = distinct.str.contains("%2", literal=True) & ~distinct.str.contains(" ", literal=True)
    mapping: dict[str, str] = {v: unquote(v) for v in distinct.filter(encoded).to_list()}
    if escapes:
        marked = distinct.filter(distinct.replace(mapping).str.contains("\\x", literal=True)).to_list()
        for v in marked:
            mapping[v] = _hex_decoded(mapping.get(v, v))
    mapping = {k: v for k, v in mapping.items() if k != v}
    return agents.replace(mapping) if mapping else agents


_HEX_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _hex_decoded(text: str) -> str:
    """nginx writes a quote, a backslash and every non-ASCII byte as ``\\xHH``: decoded as UTF-8.
    A value that would decode to control characters keeps its escapes: they must not reach a
    terminal or a report as raw bytes."""
    parts: list[bytes] = []
    pos = 0
    for m in _HEX_ESCAPE.finditer(text):
        parts += [text[pos : m.start()].encode("utf-8"), bytes([int(m.group(1), 16)])]
        pos = m.end()
    out = b"".join([*parts, text[pos:].encode("utf-8")]).decode("utf-8", "replace")
    return text if _CONTROL.search(out) else out


def _hex_unescaped(values: pl.Series) -> pl.Series:
    return _per_distinct(values, values.str.contains("\\x", literal=True), _hex_decoded)


def epoch_to_ts(col: pl.Expr) -> pl.Expr:
    """Epoch seconds, milliseconds or nanoseconds (told apart by magnitude) → UTC timestamp."""
    v = col.cast(pl.Float64, strict=False)
    us = (
        pl.when(v > 1e17).then(v / 1e3)
        .when(v > 1e14).then(v)
        .when(v > 1e11).then(v * 1e3)
        .otherwise(v * 1e6)
    )
    # Beyond the Int64 range (a garbage number): null, so the line is a bad_timestamp reject.
    return us.cast(pl.Int64, strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _zone_minutes(zone: str | None) -> int | None:
    """"+hhmm" → minutes east of UTC; None for anything else (left to the full parser)."""
    m = _ZONE.fullmatch(zone or "")
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return -minutes if m.group(1) == "-" else minutes


def _zoned(ts: pl.Series, zone: pl.Series) -> pl.Series:
    """``ts``, local clocks read as if UTC, moved to UTC by each line's zone, worked out once
    per distinct zone (a log has one or two); null where the zone does not read, so the
    fallback parsers see those lines."""
    offsets = {z: _zone_minutes(z) for z in zone.unique().to_list()}
    if not offsets:
        return ts
    minutes = next(iter(offsets.values()))
    if len(offsets) == 1 and minutes is not None:
        return ts if minutes == 0 else ts - timedelta(minutes=minutes)
    shift = (zone.replace_strict(offsets, return_dtype=pl.Int64) * 60_000_000).cast(pl.Duration("us"))
    return ts - shift


def _present(value: pl.Expr) -> pl.Expr:
    """``value``, with the log's spellings of "nothing" ("", "-") as null."""
    return pl.when(value.is_in(_MISSING)).then(None).otherwise(value)


def _client_address(cols: set[str]) -> pl.Expr:
    """The raw client address: ``remote_addr``, or ``remote_addr_port`` without its port."""
    if "remote_addr_port" in cols:
        return _present(pl.col("remote_addr_port").str.replace(r":\d+$", "")).alias("_ip_raw")
    if "remote_addr" in cols:
        return _present(pl.col("remote_addr")).alias("_ip_raw")
    return pl.lit(None, pl.String).alias("_ip_raw")


def with_line_text(rejects: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Rejects read from raw bytes (``line`` null) with their verbatim text from ``lines``
    (``line_no``, ``line``), in line order."""
    text = lines.select("line_no", pl.col("line").alias("_text"))
    return (
        rejects.join(text, on="line_no", how="left")
        .with_columns(pl.col("line").fill_null(pl.col("_text")))
        .drop("_text")
        .sort("line_no")
    )


def _none_rejected(df: pl.DataFrame) -> bool:
    """True when no row meets a reject reason of ``finish``, from column counts and bounds: a
    few integer aggregates instead of the per-row reason chain. Any doubt answers False."""
    m = df.select(
        pl.col("_matched").all().alias("matched"),
        pl.col("ts").null_count().alias("ts_nulls"),
        (pl.col("client_ip").null_count() - pl.col("_ip_raw").null_count()).alias("bad_ips"),
        pl.col("status").null_count().alias("status_nulls"),
        pl.col("_status_raw").null_count().alias("raw_nulls"),
        pl.col("status").min().alias("lo"),
        pl.col("status").max().alias("hi"),
    ).row(0, named=True)
    if not m["matched"] or m["ts_nulls"] or m["bad_ips"]:
        return False
    if m["status_nulls"] != m["raw_nulls"]:
        return False  # a status that did not read as a number (or "-", which the chain allows)
    return m["lo"] is None or (m["lo"] >= 100 and m["hi"] <= 999)


def finish(raw: pl.LazyFrame, default_tz: str, *, escapes: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Captured strings (plus ``line``, ``line_no``, ``source``, ``_matched``) → (hits, rejects).

    ``escapes=False`` says no value has a backslash (the caller saw none in the raw bytes):
    the search for nginx's ``\\xHH`` escapes is skipped.
    """
    cols = set(raw.collect_schema().names())
    ts_exprs = _ts_exprs(cols, default_tz)
    exprs: list[pl.Expr] = [ts_exprs[0].alias("ts")]

    # From fields logged apart ($request_method, $uri and $args, a CDN's JSON keys).
    method: pl.Expr = pl.col("request_method") if "request_method" in cols else pl.lit(None, pl.String)
    path_col = next((c for c in ("request_uri", "uri") if c in cols), None)
    target: pl.Expr = pl.col(path_col) if path_col else pl.lit(None, pl.String)
    if path_col and "args" in cols:
        # $uri and $args, or a path and its query logged apart (CDN JSON), joined; a full
        # $request_uri that already carries a query keeps it.
        joined = _present(pl.col("args")).is_not_null()
        if path_col == "request_uri":
            joined = joined & ~target.str.contains("?", literal=True).fill_null(True)
        target = pl.when(joined).then(target + "?" + pl.col("args")).otherwise(target)
    protocol: pl.Expr = pl.col("server_protocol") if "server_protocol" in cols else pl.lit(None, pl.String)
    if "request" in cols:
        # Split once into temporary columns; expressions that share a sub-expression are not
        # always deduplicated, and the request split is the costliest part of this stage.
        parts = pl.col("request").str.splitn(" ", 3)
        raw = raw.with_columns(parts.alias("_rq")).with_columns(
            pl.col("_rq").struct.field("field_0").alias("_rq0"),
            pl.col("_rq").struct.field("field_1").alias("_rq1"),
            pl.col("_rq").struct.field("field_2").alias("_rq2"),
        ).with_columns(
            (pl.col("_rq0").str.contains(r"^[A-Za-z][A-Za-z_-]*$") & pl.col("_rq1").is_not_null()).alias("_wf")
        ).with_columns(
            # A request that is not "METHOD target [protocol]" (binary probes, "-") keeps its
            # raw text as the path so probes stay visible.
            pl.when(pl.col("_wf")).then(pl.col("_rq1"))
            .when(pl.col("request").is_in(_MISSING)).then(None)
            .otherwise(pl.col("request")).alias("_target")
        )
        from_request = (
            pl.when(pl.col("_wf")).then(pl.col("_rq0")),
            pl.col("_target"),
            pl.when(pl.col("_wf")).then(pl.col("_rq2")),
        )
        if "request_method" in cols or path_col:
            # A JSON map may name both: lines without the request line use the fields.
            method, target, protocol = (pl.coalesce(a, b) for a, b in zip(from_request, (method, target, protocol), strict=True))
        else:
            method, target, protocol = from_request
    raw = raw.with_columns(target.alias("_target"))
    target = pl.col("_target")
    raw = raw.with_columns(target.str.find("?", literal=True).alias("_qpos"))
    qpos = pl.col("_qpos")
    exprs += [
        method.alias("method"),
        pl.when(qpos.is_null()).then(target).otherwise(target.str.slice(0, qpos)).alias("path"),
        pl.when(qpos.is_null()).then(None).otherwise(target.str.slice(qpos + 1)).alias("query"),
        protocol.alias("protocol"),
    ]

    def opt(name: str, out: str) -> pl.Expr:
        return (_present(pl.col(name)) if name in cols else pl.lit(None, pl.String)).alias(out)

    status_raw = pl.col("status") if "status" in cols else pl.lit(None, pl.String)
    bytes_col = "body_bytes_sent" if "body_bytes_sent" in cols else "bytes_sent"
    exprs += [
        status_raw.alias("_status_raw"),
        opt(bytes_col, "_bytes_raw"),
        opt("http_referer", "referer"),
        opt("http_user_agent", "user_agent"),
        opt("host", "host"),
        opt("request_time", "_rt_raw"),
        opt("http_x_forwarded_for", "x_forwarded_for"),
        opt("session", "session_id"),
        opt("tls", "tls_fingerprint"),
        _client_address(cols),
        pl.col("source"),
        pl.col("line_no"),
        pl.col("line"),
        pl.col("_matched"),
        *[pl.col(c) for c in _TIME_COLUMNS if c in cols],
    ]
    # Typed casts in the same pass; only the rare rest needs Python.
    df = raw.select(exprs).with_columns(
        pl.col("_status_raw").cast(pl.Int16, strict=False).alias("status"),
        pl.col("_bytes_raw").cast(pl.Int64, strict=False).alias("bytes"),
        pl.col("_rt_raw").cast(pl.Float64, strict=False).alias("request_time_s"),
    ).collect()
    # Rare cases, fixed on the few rows that need it rather than paying on every row.
    if SPLIT_ZONE in cols:
        df = df.with_columns(_zoned(df["ts"], df[SPLIT_ZONE]))
    time_cols = [c for c in _TIME_COLUMNS if c in cols]
    for fallback in ts_exprs[1:]:
        if df["ts"].null_count() == 0:
            break
        idx = df.select(pl.col("ts").is_null().arg_true()).to_series()
        # Only the time columns of those rows: gathering whole rows copies every string.
        fixed = df.select(*time_cols)[idx].select(fallback.alias("ts"))["ts"]
        df = df.with_columns(df["ts"].scatter(idx, fixed))
    if (~df["path"].str.starts_with("/")).any():
        # Absolute-form targets (proxies, ALB) keep only path and query. Origin-form targets
        # start with "/": the scheme pattern runs only when some path does not.
        absolute = df["path"].str.contains(r"^[a-zA-Z][a-zA-Z0-9+.-]*://").fill_null(False)
        df = df.with_columns(
            pl.when(absolute).then(
                pl.col("path").str.replace(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*", "")
            ).otherwise(pl.col("path")).alias("path")
        )

    df = df.with_columns(_decoded_agents(df["user_agent"], escapes))
    if escapes:
        df = df.with_columns(_hex_unescaped(df["referer"]))

    ip = normalize_ip_column(df["_ip_raw"])
    df = df.with_columns(ip.alias("client_ip"), pl.lit(None, pl.String).alias("peer_ip"))
    reason = (
        pl.when(~pl.col("_matched")).then(pl.lit("no_match"))
        .when(pl.col("ts").is_null()).then(pl.lit("bad_timestamp"))
        .when(pl.col("_ip_raw").is_not_null() & pl.col("client_ip").is_null()).then(pl.lit("bad_client_ip"))
        .when(
            pl.col("_status_raw").is_not_null()
            & ~pl.col("_status_raw").is_in(_MISSING)
            & (pl.col("status").is_null() | (pl.col("status") < 100) | (pl.col("status") > 999))
        ).then(pl.lit("bad_status"))
        .otherwise(None)
    )
    hits_schema = [pl.col(n).cast(t) for n, t in HITS_SCHEMA.items()]
    if _none_rejected(df):
        # The usual batch: no reason column, no filter (which would copy every string).
        return df.select(hits_schema), pl.DataFrame(schema=REJECTS_SCHEMA)
    df = df.with_columns(reason.alias("_reason"))
    lf = df.lazy()
    hits, rejects = pl.collect_all([
        lf.filter(pl.col("_reason").is_null()).select(hits_schema),
        lf.filter(pl.col("_reason").is_not_null()).select(
            pl.col("source").cast(pl.String), pl.col("line_no").cast(pl.Int64),
            pl.col("_reason").alias("reason"), pl.col("line").cast(pl.String),
        ),
    ])
    return hits, rejects
