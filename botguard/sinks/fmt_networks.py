"""Addresses for the exports and the state store: parse, normalize, cover, collapse.

Every ``entry`` is treated as hostile even though the policy stage validated it: a crafted log
line must never get text into an nginx or firewall config. So each value is re-parsed with
:mod:`ipaddress` here and only the canonical text rebuilt from the parsed address is written;
anything else is dropped and counted.

The working frame carries the address as ``family`` (4/6), ``start`` (UInt128) and ``prefix``,
so sorting is numeric (family, then address, then wider network first) and covering, collapsing
and allow-list lookups are vectorized. Per-row Python work is limited to parsing values not
seen before (IPv4 in canonical form is parsed vectorized too) and splitting a blocked network
around an allowed hole.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import polars as pl

from botguard.schema import BLOCK_ENTRIES_SCHEMA, conform

BITS = {4: 32, 6: 128}
# The longest valid spelling is an IPv4-mapped IPv6 CIDR (45 chars); refusing longer strings
# before parsing bounds the work a hostile value can cause.
_MAX_TEXT = 64
_EXAMPLES = 5

#: Columns added to the block-entries columns in the working frame.
WORK_EXTRA: dict[str, pl.DataType] = {
    "family": pl.UInt8(),
    "start": pl.UInt128(),
    "prefix": pl.UInt8(),
}
WORK_COLUMNS = [*BLOCK_ENTRIES_SCHEMA, *WORK_EXTRA]
ADDRESS = ["family", "start", "prefix"]

# Size of a network per number of host bits (prefix >= 1, so at most 2**127).
_SIZES = pl.DataFrame(
    {
        "_host_bits": pl.Series(range(128), dtype=pl.UInt8),
        "_size": pl.Series([1 << i for i in range(128)], dtype=pl.UInt128),
    }
)


class InvalidNetworkError(ValueError):
    """A value that is not an IP address or network botguard can block."""


@dataclass(frozen=True, order=True)
class ParsedNetwork:
    """A validated network; hosts have the full prefix length. Orders like the exports."""

    family: int
    start: int
    prefix: int
    text: str

    @property
    def end(self) -> int:
        return self.start + (1 << (BITS[self.family] - self.prefix)) - 1

    @property
    def cidr(self) -> str:
        return self.text if "/" in self.text else f"{self.text}/{self.prefix}"

    def contains(self, other: ParsedNetwork) -> bool:
        return self.family == other.family and self.start <= other.start <= other.end <= self.end


# --------------------------------------------------------------------------- parsing
def address_text(family: int, start: int) -> str:
    """The address as ipaddress prints it (RFC 5952 for IPv6).

    IPv6 goes through the C ``inet_ntop`` (several times faster), which prints the same text
    except for ``::a.b.c.d`` and ``::ffff:a.b.c.d``; those two ranges use ipaddress. A test
    checks the equivalence.
    """
    if family == 4:
        return str(ipaddress.IPv4Address(start))
    if start >> 32 in (0, 0xFFFF):
        return str(ipaddress.IPv6Address(start))
    return socket.inet_ntop(socket.AF_INET6, start.to_bytes(16, "big"))


@functools.lru_cache(maxsize=1 << 16)
def network_text(family: int, start: int, prefix: int) -> str:
    """Canonical text: hosts bare, networks as CIDR, IPv6 compressed."""
    addr = address_text(family, start)
    return addr if prefix == BITS[family] else f"{addr}/{prefix}"


def _parse(text: str) -> ParsedNetwork | str:
    """Parse one value with :mod:`ipaddress`; a string result is the reason it was refused.

    Stricter than ``ip_network``: the prefix must be a plain decimal length (no netmask
    spelling) and IPv6 zone ids are refused (``ipaddress`` keeps them verbatim, so
    ``"fe80::1%; }"`` would otherwise round-trip into a config).
    """
    if len(text) > _MAX_TEXT:
        return "too long to be an IP address or network"
    if "%" in text:
        return "IPv6 zone ids (%) are not allowed"
    host, slash, length = text.partition("/")
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        addr = ipaddress.IPv6Address(host) if ":" in host else ipaddress.IPv4Address(host)
    except ValueError:
        return "not an IP address or network"
    bits: int = addr.max_prefixlen
    prefix: int = bits
    if slash:
        if not (length.isascii() and length.isdigit() and len(length) <= 3):
            return "not an IP address or network (bad prefix length)"
        prefix = int(length)
        if prefix > bits:
            return f"prefix length /{prefix} is longer than {bits} bits"
    start = int(addr)
    if start & ((1 << (bits - prefix)) - 1):
        wider = ipaddress.ip_network(f"{host}/{prefix}", strict=False)
        return f"host bits set (did you mean {wider}?)"
    family = addr.version
    if isinstance(addr, ipaddress.IPv6Address) and prefix >= 96 and addr.ipv4_mapped:
        # Dual-stack servers log IPv4 clients as ::ffff:a.b.c.d; firewalls see them as IPv4.
        addr, prefix, family = addr.ipv4_mapped, prefix - 96, 4
        start = int(addr)
    if prefix == 0:
        return "a /0 network would block every address"
    return ParsedNetwork(family, start, prefix, network_text(family, start, prefix))


def show(value: str) -> str:
    """A bounded, escaped rendering of a hostile value for messages."""
    return repr(value if len(value) <= 60 else value[:60] + "...")


def parse_network(value: str) -> ParsedNetwork:
    """Validate one address or CIDR (as typed by an operator), or raise a clear error."""
    if not isinstance(value, str):
        raise InvalidNetworkError(f"expected an IP address or CIDR, got {value!r}")
    parsed = _parse(value.strip())
    if isinstance(parsed, str):
        raise InvalidNetworkError(
            "expected an IP address or CIDR like 203.0.113.0/24 or 2001:db8::/32, "
            f"got {show(value)}: {parsed}"
        )
    return parsed


# --------------------------------------------------------------------------- frames
def _end() -> pl.Expr:
    return pl.col("start") + pl.col("_size") - pl.lit(1, dtype=pl.UInt128)


def _with_size(df: pl.DataFrame) -> pl.DataFrame:
    bits = pl.when(pl.col("family") == 4).then(32).otherwise(128)
    host_bits = (bits - pl.col("prefix").cast(pl.Int32)).cast(pl.UInt8).alias("_host_bits")
    return df.with_columns(host_bits).join(
        _SIZES, on="_host_bits", how="left", maintain_order="left"
    )


def merge(df: pl.DataFrame, by: str | list[str], clients: Literal["max", "sum"]) -> pl.DataFrame:
    """Merge rows sharing ``by``; rows must be sorted so the row to keep comes first.

    Score and last_seen take the max, first_seen the min, reasons the union in order; a null
    expiry means "no expiry" so it wins. Exact duplicates describe the same clients (max);
    networks folded into a wider one hold different clients (sum).
    """
    keys = [by] if isinstance(by, str) else by
    firsts = [c for c in (*ADDRESS, "entry", "action") if c not in keys]
    clients_expr = pl.col("clients").max() if clients == "max" else pl.col("clients").sum()
    # Only groups of two or more need the (list-exploding) aggregation; most rows are alone.
    multi = pl.len().over(keys) > 1
    single = df.filter(~multi).select(WORK_COLUMNS)
    merged = (
        df.filter(multi)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col(firsts).first(),
            pl.col("score").max(),
            pl.col("reasons").explode().drop_nulls().unique(maintain_order=True),
            clients_expr,
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
            pl.when(pl.col("expires").is_null().any())
            .then(pl.lit(None, dtype=BLOCK_ENTRIES_SCHEMA["expires"]))
            .otherwise(pl.col("expires").max())
            .alias("expires"),
        )
        .select(WORK_COLUMNS)
    )
    return pl.concat([single, merged]).sort(ADDRESS)


def sort_unique(df: pl.DataFrame, clients: Literal["max", "sum"] = "max") -> pl.DataFrame:
    """Sort by address (highest priority first within an address) and merge duplicates."""
    df = df.sort(
        [*ADDRESS, "score", "clients"],
        descending=[False, False, False, True, True],
        nulls_last=True,
    )
    if df.select(pl.struct(ADDRESS).is_duplicated().any()).item():
        df = merge(df, ADDRESS, clients)
    return df


@dataclass(frozen=True)
class Normalized:
    """Valid entries as a working frame, and what was refused."""

    frame: pl.DataFrame
    invalid_rows: int
    invalid_examples: tuple[str, ...]


_LOOKUP_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.String(),
    "_text": pl.String(),
    "_refused": pl.String(),
    **WORK_EXTRA,
}
# Raw value -> parsed address (or the reason it was refused), as a frame so that validating
# a value already seen is a vectorized join, not a Python call: a run renders several formats
# from the same 100k entries, and cron runs see mostly the same clients.
_LOOKUP_MAX_ROWS = 1 << 20
_lookup = pl.DataFrame(schema=_LOOKUP_SCHEMA)


def _parse_all(raws: list[str]) -> pl.DataFrame:
    texts: list[str | None] = []
    refused: list[str | None] = []
    families: list[int | None] = []
    starts: list[int | None] = []
    prefixes: list[int | None] = []
    for raw in raws:
        p = _parse(raw)
        if isinstance(p, str):
            texts.append(None)
            refused.append(p)
            families.append(None)
            starts.append(None)
            prefixes.append(None)
        else:
            texts.append(p.text)
            refused.append(None)
            families.append(p.family)
            starts.append(p.start)
            prefixes.append(p.prefix)
    columns = {
        "entry": raws,
        "_text": texts,
        "_refused": refused,
        "family": families,
        "start": starts,
        "prefix": prefixes,
    }
    return pl.DataFrame(columns, schema=_LOOKUP_SCHEMA)


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Canonical dotted-quad IPv4 with an optional plain prefix length: exactly the spellings
# ipaddress accepts and prints back unchanged ([0-9], not \d, which is Unicode-aware).
_IPV4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(3[0-2]|[12]?[0-9]))?$"


def _parse_ipv4_fast(raws: pl.Series) -> pl.DataFrame:
    """Vectorized parse of plain IPv4 values (most of any blocklist).

    Returns lookup rows only for values that are certainly valid; anything else (IPv6, host
    bits set, /0, odd spellings) is left to :func:`_parse`, which has the final word and the
    error messages. A property test checks both paths agree.
    """
    parts = raws.str.extract_groups(_IPV4).struct.unnest()
    octets = [parts[str(i)].cast(pl.UInt64) for i in range(1, 5)]
    start = octets[0] * (1 << 24) + octets[1] * (1 << 16) + octets[2] * (1 << 8) + octets[3]
    start = start.cast(pl.UInt128)
    frame = (
        pl.DataFrame(
            {"entry": raws, "start": start, "prefix": parts["5"].cast(pl.UInt8).fill_null(32)}
        )
        .filter(pl.col("start").is_not_null() & (pl.col("prefix") > 0))
        .with_columns(_host_bits=(32 - pl.col("prefix")).cast(pl.UInt8))
        .join(_SIZES, on="_host_bits", how="left", maintain_order="left")
        .filter(pl.col("start") % pl.col("_size") == 0)
    )
    host = pl.col("entry").str.split("/").list.first()
    return frame.select(
        "entry",
        pl.when(pl.col("prefix") == 32)
        .then(host)
        .otherwise(pl.concat_str(host, pl.lit("/"), pl.col("prefix").cast(pl.String)))
        .alias("_text"),
        pl.lit(None, dtype=pl.String).alias("_refused"),
        pl.lit(4, dtype=pl.UInt8).alias("family"),
        "start",
        "prefix",
    )


def _lookup_for(raw: pl.Series) -> pl.DataFrame:
    """The parse of every distinct value in ``raw``, parsing only values not seen before."""
    global _lookup
    known = _lookup
    # Over-long values are refused without parsing and never cached (bounded memory).
    uniques = raw.drop_nulls().unique()
    uniques = uniques.filter(uniques.str.len_bytes() <= _MAX_TEXT)
    missing = uniques.filter(~uniques.is_in(known["entry"].implode())).to_list()
    if missing:
        if known.height + len(missing) > _LOOKUP_MAX_ROWS:
            known = known.clear()
        fast = _parse_ipv4_fast(pl.Series(missing, dtype=pl.String))
        slow = sorted(set(missing) - set(fast["entry"].to_list()))
        known = pl.concat([known, fast, _parse_all(slow)])
        _lookup = known
    return known.filter(pl.col("entry").is_in(uniques.implode()))


def normalize(entries: pl.DataFrame) -> Normalized:
    """Validate every entry: one row per distinct network, canonical text, numeric order."""
    df = conform(entries, BLOCK_ENTRIES_SCHEMA)
    lookup = _lookup_for(df["entry"])
    joined = df.join(lookup, on="entry", how="left")
    ok = pl.col("family").is_not_null()
    valid = (
        joined.filter(ok)
        .with_columns(entry=pl.col("_text"), action=pl.col("action").fill_null("block"))
        .select(WORK_COLUMNS)
    )
    refused = lookup.filter(pl.col("family").is_null()).select("entry", "_refused")
    too_long = (
        df.filter(pl.col("entry").str.len_bytes() > _MAX_TEXT)
        .select("entry", pl.lit("too long to be an IP address or network").alias("_refused"))
        .unique()
    )
    shown = pl.concat([refused, too_long]).sort("entry").head(_EXAMPLES)
    examples = tuple(f"{show(raw)}: {why}" for raw, why in shown.iter_rows())
    return Normalized(sort_unique(valid), df.height - valid.height, examples)


def canonical(raw: pl.Series) -> pl.Series:
    """Canonical text for each value, null where the value is not a valid address/network."""
    lookup = _lookup_for(raw).select("entry", "_text")
    frame = raw.cast(pl.String).rename("entry").to_frame()
    return frame.join(lookup, on="entry", how="left", maintain_order="left")["_text"]


def cover(df: pl.DataFrame) -> pl.DataFrame:
    """Drop networks inside a wider listed one, folding their details into it.

    CIDR blocks either nest or are disjoint, so in address order a row is covered exactly when
    it starts at or before the furthest end seen so far in its family.
    """
    if df.height < 2:
        return df
    sized = _with_size(df)
    covered = (pl.col("family") == pl.col("family").shift(1)) & (
        pl.col("start") <= _end().cum_max().over("family").shift(1)
    )
    marked = sized.with_columns(_covered=covered.fill_null(False))
    if not marked["_covered"].any():
        return df
    target = (~pl.col("_covered")).cast(pl.UInt32).cum_sum().alias("_target")
    return merge(marked.with_columns(target), "_target", "sum")


def collapse(df: pl.DataFrame) -> pl.DataFrame:
    """The fewest networks covering every row of a working frame, details merged.

    After :func:`cover` the networks are disjoint; each pass merges every adjacent pair that
    are the two halves of one parent (a vectorized step), until no pair is left. That yields
    the unique minimal CIDR cover; passes are bounded by the prefix length (32 or 128).
    """
    df = cover(df)
    nodes = df.select(ADDRESS)
    node_of_row = pl.Series(range(df.height), dtype=pl.UInt32)
    two = pl.lit(2, dtype=pl.UInt128)
    while nodes.height > 1:
        left = (
            (pl.col("family") == pl.col("family").shift(-1))
            & (pl.col("prefix") == pl.col("prefix").shift(-1))
            # Stop at /1: the two halves of the address space never become a /0.
            & (pl.col("prefix") > 1)
            & (pl.col("start") % (pl.col("_size") * two) == 0)
            & (pl.col("start").shift(-1) == pl.col("start") + pl.col("_size"))
        ).fill_null(False)
        flags = _with_size(nodes).select(left.alias("left"))["left"]
        if not flags.any():
            break
        right = flags.shift(1, fill_value=False)
        node_of_row = ((~right).cast(pl.UInt32).cum_sum() - 1).gather(node_of_row)
        nodes = nodes.with_columns(
            prefix=pl.when(flags).then(pl.col("prefix") - 1).otherwise(pl.col("prefix"))
        ).filter(~right)
    if nodes.height == df.height:
        return df
    merged = merge(df.with_columns(_target=node_of_row), "_target", "sum")
    changed = merged["prefix"] != nodes["prefix"]
    texts = [network_text(f, s, p) for f, s, p in nodes.filter(changed).iter_rows()]
    entry = merged["entry"]
    if texts:
        entry = entry.scatter(changed.arg_true(), pl.Series(texts, dtype=pl.String))
    return merged.with_columns(prefix=nodes["prefix"], entry=entry)


def widen(df: pl.DataFrame, max_prefix: Mapping[int, int]) -> pl.DataFrame:
    """Widen entries narrower than a target accepts (Cloudflare: IPv6 to /64), then dedupe."""
    if not max_prefix or df.is_empty():
        return df
    limit = pl.col("family").replace_strict(
        dict(max_prefix), default=pl.col("prefix"), return_dtype=pl.UInt8
    )
    narrow = df.filter(pl.col("prefix") > limit)
    if narrow.is_empty():
        return df
    narrow = _with_size(narrow.with_columns(prefix=limit)).with_columns(
        start=pl.col("start") // pl.col("_size") * pl.col("_size")
    )
    texts = [
        network_text(f, s, p)
        for f, s, p in zip(
            narrow["family"].to_list(),
            narrow["start"].to_list(),
            narrow["prefix"].to_list(),
            strict=True,
        )
    ]
    narrow = narrow.with_columns(entry=pl.Series(texts, dtype=pl.String)).select(WORK_COLUMNS)
    return sort_unique(pl.concat([df.filter(pl.col("prefix") <= limit), narrow]), "sum")


def as_entries(df: pl.DataFrame) -> pl.DataFrame:
    """A working frame back to the block-entries schema."""
    return df.select(list(BLOCK_ENTRIES_SCHEMA))


_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip_network(family: int, start: int, prefix: int) -> _Net:
    if family == 4:
        return ipaddress.IPv4Network((start, prefix))
    return ipaddress.IPv6Network((start, prefix))


def exclude(df: pl.DataFrame, networks: list[ParsedNetwork]) -> pl.DataFrame:
    """Remove every address in ``networks`` from a working frame (allow beats block).

    A row inside an excluded network is dropped; a row that contains one is split into the
    networks around it (blocking 10.0.0.0/8 but allowing 10.1.2.3 leaves 24 networks), each
    keeping the row's details. Sorted searches find the affected rows, so only rows to split
    are handled one by one.
    """
    if df.is_empty() or not networks:
        return df
    for family, holes in _holes(networks):
        df = _exclude_family(df, family, holes)
    return sort_unique(df, "sum")


def covered(df: pl.DataFrame, networks: list[ParsedNetwork]) -> pl.Series:
    """Which rows of a working frame lie wholly inside one of ``networks``."""
    mask = pl.Series("covered", [False] * df.height, dtype=pl.Boolean)
    for family, holes in _holes(networks):
        mask = mask | _cover(_with_size(df).with_columns(_end=_end()), family, holes)[0]
    return mask


def _holes(networks: list[ParsedNetwork]) -> list[tuple[int, list[_Net]]]:
    """``networks`` per family, collapsed: sorted and disjoint."""
    out = []
    for family in (4, 6):
        holes = list(
            ipaddress.collapse_addresses(  # type: ignore[type-var, misc]
                _ip_network(n.family, n.start, n.prefix) for n in networks if n.family == family
            )
        )
        if holes:
            out.append((family, sorted(holes)))
    return out


def _cover(rows: pl.DataFrame, family: int, holes: list[_Net]) -> tuple[pl.Series, pl.Series]:
    """(covered, contains): rows (with ``_end``) inside a hole, and rows that hold one.

    Holes and rows are CIDR blocks: they nest or are disjoint. A row is covered when the last
    hole starting at or before it reaches its end; it contains a hole when the first hole
    starting at or after its start begins before its end."""
    starts = pl.Series([int(h.network_address) for h in holes], dtype=pl.UInt128)
    ends = pl.Series([int(h.broadcast_address) for h in holes], dtype=pl.UInt128)
    last = len(holes) - 1
    before = starts.search_sorted(rows["start"], side="right").cast(pl.Int64) - 1
    after = starts.search_sorted(rows["start"], side="left").cast(pl.Int64)
    same = rows["family"] == family
    covered = same & (before >= 0) & (ends.gather(before.clip(0, last)) >= rows["_end"])
    contains = (
        same & ~covered & (after <= last) & (starts.gather(after.clip(0, last)) <= rows["_end"])
    )
    return covered, contains


def _exclude_family(df: pl.DataFrame, family: int, holes: list[_Net]) -> pl.DataFrame:
    """:func:`exclude` for one family; ``holes`` sorted and disjoint."""
    rows = _with_size(df).with_columns(_end=_end())
    covered, contains = _cover(rows, family, holes)
    keep = rows.filter(~covered & ~contains).select(WORK_COLUMNS)
    split = rows.filter(contains).select(WORK_COLUMNS)
    if split.is_empty():
        return keep
    pieces: list[dict[str, object]] = []
    for row in split.iter_rows(named=True):
        remaining = [_ip_network(family, row["start"], row["prefix"])]
        for hole in holes:
            remaining = [
                piece
                for net in remaining
                for piece in (
                    (net,) if not net.overlaps(hole) else net.address_exclude(hole)  # type: ignore[arg-type]
                )
            ]
        for piece in remaining:
            start, prefix = int(piece.network_address), piece.prefixlen
            pieces.append(
                {
                    **row,
                    "start": start,
                    "prefix": prefix,
                    "entry": network_text(family, start, prefix),
                }
            )
    schema = {**BLOCK_ENTRIES_SCHEMA, **WORK_EXTRA}
    return pl.concat([keep, pl.DataFrame(pieces, schema=schema).select(WORK_COLUMNS)])
