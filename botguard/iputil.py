"""Vectorized IP helpers over Polars string Series of normalized addresses.

Logs carry millions of rows but far fewer distinct addresses, and the lists we test them against
(cloud ranges, crawler ranges) hold tens of thousands of networks. So:

- IPv4 is done entirely with integer arithmetic: addresses become UInt32 in Polars, networks
  become merged integer intervals, and membership is one ``numpy.searchsorted``.
- IPv6 is parsed in Python once per *distinct* address (never per row), packed to 16
  big-endian bytes, and searched the same way: fixed-width byte strings sort like the 128-bit
  integers they encode, so numpy can search them without Python loops.

Several labelled lists can share one index (:class:`NetworkIndex`); a lookup then returns the
label of the first list, in the order given, that contains the address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = [
    "NetworkIndex",
    "in_networks",
    "ip_version",
    "ipv4_to_int",
    "parse_network",
    "prefix",
]

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_RE = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
_V4_NET_RE = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(?:3[0-2]|[12]?[0-9]))?$"
_V6_MAX = (1 << 128) - 1
_V6_PREFIXES = {str(n): n for n in range(129)}
# Only ASCII whitespace: every character here is one str.strip() removes too, so the fast path
# never accepts text that ipaddress would refuse; rarer whitespace is left to parse_network.
_ASCII_WS = " \t\n\r\x0b\x0c"
_MAPPED = b"\x00" * 10 + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses


def ipv4_to_int(series: pl.Series) -> pl.Series:
    """Dotted-quad IPv4 → UInt32; null for anything else (IPv6, garbage, null).

    Only canonical dotted quads count (no leading zeros), which is what normalized addresses are.
    """
    col = pl.col("a")
    octets = col.str.split_exact(".", 3).struct
    value = sum(
        (octets.field(f"field_{i}").cast(pl.UInt32, strict=False) * (1 << (24 - 8 * i)))
        for i in range(4)
    )
    frame = pl.DataFrame({"a": series.cast(pl.String)})
    out = frame.select(pl.when(col.str.contains(_V4_RE)).then(value).cast(pl.UInt32))
    return out.to_series().alias(series.name)


def ip_version(series: pl.Series) -> pl.Series:
    """4, 6 or null (not an address) per row, as Int8. IPv6 is checked once per distinct value."""
    series = series.cast(pl.String)
    v4 = ipv4_to_int(series).is_not_null()
    candidates = series.filter(~v4 & series.str.contains(":", literal=True)).unique()
    v6 = [a for a in candidates.to_list() if _packed_v6(a) is not None]
    frame = pl.DataFrame({"v4": v4, "v6": series.is_in(pl.Series(v6, dtype=pl.String).implode())})
    out = frame.select(
        pl.when(pl.col("v4")).then(4).when(pl.col("v6")).then(6).cast(pl.Int8)
    ).to_series()
    return out.alias(series.name)


def prefix(series: pl.Series, v4_len: int, v6_len: int) -> pl.Series:
    """The enclosing network as a string ('203.0.113.0/24', '2001:db8:1:2::/64'); null if invalid.

    Used to group neighbours: many scrapers rotate through one /24 or one /64.
    """
    if not (0 <= v4_len <= 32 and 0 <= v6_len <= 128):
        raise ValueError(f"prefix lengths out of range: v4 {v4_len}, v6 {v6_len}")
    series = series.cast(pl.String)
    ints = ipv4_to_int(series)
    net = pl.col("int").cast(pl.Int64)
    net = net - net % (1 << (32 - v4_len))
    octets = [(net // (1 << shift) % 256).cast(pl.String) for shift in (24, 16, 8, 0)]
    v4 = (
        pl.DataFrame({"int": ints})
        .select(pl.concat_str(octets, separator=".") + f"/{v4_len}")
        .to_series()
    )
    rest = series.filter(ints.is_null() & series.is_not_null()).unique().to_list()
    v6_map: dict[str, str] = {}
    for text in rest:
        packed = _packed_v6(text)
        if packed is not None:
            first = int.from_bytes(packed, "big") >> (128 - v6_len) << (128 - v6_len)
            v6_map[text] = str(ipaddress.IPv6Network((first, v6_len)))
    if v6_map:
        v6 = series.replace_strict(
            list(v6_map), list(v6_map.values()), default=None, return_dtype=pl.String
        )
        v4 = v4.fill_null(v6)
    return v4.alias(series.name)


#: Never a member of the public: private (RFC 1918, ULA), carrier-grade NAT's inside, loopback,
#: link-local, multicast and reserved space. The documentation ranges (192.0.2.0/24 and the
#: like) are left out: examples and tests use them to stand for public addresses.
NON_PUBLIC_NETWORKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
]


def in_networks(series: pl.Series, networks: Sequence[str]) -> pl.Series:
    """True where the address lies in any of ``networks``; null where the value is not an address.

    For repeated lookups against the same list build a :class:`NetworkIndex` once instead.
    """
    labels, valid = NetworkIndex.build([networks])._lookup(series)
    frame = pl.DataFrame({"label": labels, "valid": valid})
    out = frame.select(pl.when(pl.col("valid")).then(pl.col("label").is_not_null()))
    return out.to_series().alias(series.name)


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR, host bits masked ('10.0.0.1/8' → 10.0.0.0/8). Raises ValueError."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _packed_v6(text: str) -> bytes | None:
    """16 big-endian bytes of an IPv6 address, or None.

    ``inet_pton`` is about thirty times faster than :mod:`ipaddress`, which still handles what
    it refuses (zone ids like ``fe80::1%eth0``).
    """
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError, TypeError):
        pass
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        return None


# --------------------------------------------------------------------------- parsing lists
def _parse_list(texts: list[str]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(IPv4 starts, IPv4 half-open ends, inclusive IPv6 intervals), read as parse_network would.

    Canonical dotted IPv4 CIDRs, the bulk of every range list, are parsed in Polars at once;
    IPv6 goes through ``inet_pton``. Anything else (netmasks, leading zeros, zone ids, odd
    whitespace, garbage) is handed to :func:`parse_network` one by one, in list order, so the
    first bad entry raises the same error as ever.
    """
    stripped = pl.col("t").str.strip_chars(_ASCII_WS)
    # Once the regex has vouched for a row, its five numbers are the four octets and the prefix.
    fields = stripped.str.replace("/", ".", literal=True).str.split_exact(".", 4).struct
    value = sum(
        fields.field(f"field_{i}").cast(pl.Int64, strict=False) * (1 << (24 - 8 * i))
        for i in range(4)
    )
    length = fields.field("field_4").cast(pl.Int64, strict=False).fill_null(32)
    out = (
        _string_series(texts)
        .to_frame("t")
        .select(
            pl.when(stripped.str.contains(_V4_NET_RE)).then(value).otherwise(-1).alias("first"),
            length.alias("length"),
        )
    )
    first = out["first"].to_numpy()
    is_v4 = first >= 0
    size = np.left_shift(np.int64(1), 32 - out["length"].to_numpy()[is_v4])
    first = first[is_v4] & ~(size - 1)
    starts, ends = [first], [first + size]

    v4_s: list[int] = []
    v4_e: list[int] = []
    v6: list[tuple[int, int]] = []
    for i in np.flatnonzero(~is_v4).tolist():
        text = texts[i]
        interval = _v6_interval(text) if isinstance(text, str) else None
        if interval is not None:
            v6.append(interval)
            continue
        try:
            net = parse_network(text)
        except ValueError as exc:
            raise ValueError(f"not an IP network: {text!r} ({exc})") from None
        low = int(net.network_address)
        if net.version == 4:
            v4_s.append(low)
            v4_e.append(low + net.num_addresses)
        else:
            v6.append((low, low + net.num_addresses - 1))
    if v4_s:
        starts.append(np.array(v4_s, dtype=np.int64))
        ends.append(np.array(v4_e, dtype=np.int64))
    return np.concatenate(starts), np.concatenate(ends), v6


def _string_series(texts: list[str]) -> pl.Series:
    """``texts`` as Polars strings, with null for what Polars cannot hold (non-strings, lone
    surrogates): such entries merely skip the IPv4 fast path, and parse_network still judges
    the original objects, raising what it always raised.
    """
    if set(map(type, texts)) <= {str}:
        try:
            return pl.Series(texts, dtype=pl.String)
        except ValueError:
            pass
    keep = [t if isinstance(t, str) and t.isascii() else None for t in texts]
    return pl.Series(keep, dtype=pl.String)


def _v6_interval(text: str) -> tuple[int, int] | None:
    """Inclusive bounds of an IPv6 network, or None to leave ``text`` to :mod:`ipaddress`.

    Whatever ``inet_pton`` accepts, ipaddress reads as the same address; it refuses zone ids
    and other oddities, which ipaddress then judges. Prefix lengths must be written plainly.
    """
    addr, slash, digits = text.strip().partition("/")
    length = _V6_PREFIXES.get(digits) if slash else 128
    if length is None:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr)
    except (OSError, ValueError):
        return None
    host = _V6_MAX >> length
    low = int.from_bytes(packed, "big") & ~host
    return low, low | host


# --------------------------------------------------------------------------- interval index
@dataclass(frozen=True)
class _Segments:
    """Elementary segments: ``labels[k]`` holds on ``[bounds[k], bounds[k+1])`` (-1 = none)."""

    bounds: np.ndarray
    labels: np.ndarray

    def find(self, keys: np.ndarray) -> np.ndarray:
        if len(keys) == 0 or len(self.bounds) == 0:
            return np.full(len(keys), -1, dtype=np.int32)
        pos = np.searchsorted(self.bounds, keys, side="right") - 1
        found = self.labels[np.clip(pos, 0, None)]
        return np.where(pos >= 0, found, -1).astype(np.int32)


def _merge_v4(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, non-overlapping half-open intervals covering the same addresses."""
    if len(starts) == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]
    idx = np.flatnonzero(new)
    return starts[idx], np.maximum.reduceat(ends, idx)


def _merge_py(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge inclusive integer intervals (IPv6: Python ints, run once per network list)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _pack(values: Iterable[int]) -> np.ndarray:
    return np.array([v.to_bytes(16, "big") for v in values], dtype="S16")


def _segments_v4(groups: list[tuple[np.ndarray, np.ndarray]]) -> _Segments:
    merged = [_merge_v4(s, e) for s, e in groups]
    bounds = np.unique(np.concatenate([np.zeros(1, np.int64), *(x for m in merged for x in m)]))
    labels = np.full(len(bounds), -1, dtype=np.int32)
    # Later groups first, so that earlier ones (higher priority) overwrite them.
    for label in range(len(merged) - 1, -1, -1):
        starts, ends = merged[label]
        if len(starts) == 0:
            continue
        pos = np.searchsorted(starts, bounds, side="right") - 1
        inside = (pos >= 0) & (bounds < ends[np.clip(pos, 0, None)])
        labels[inside] = label
    # No address reaches 2**32, and uint32 halves the memory each search walks through.
    below = bounds < (1 << 32)
    return _compress(bounds[below].astype(np.uint32), labels[below])


def _segments_v6(groups: list[list[tuple[int, int]]]) -> _Segments:
    merged = [_merge_py(g) for g in groups]
    points = {0}
    for intervals in merged:
        for start, end in intervals:
            points.add(start)
            if end < _V6_MAX:
                points.add(end + 1)
    bounds = _pack(sorted(points))
    labels = np.full(len(bounds), -1, dtype=np.int32)
    for label in range(len(merged) - 1, -1, -1):
        if not merged[label]:
            continue
        starts = _pack(s for s, _ in merged[label])
        ends = _pack(e for _, e in merged[label])
        pos = np.searchsorted(starts, bounds, side="right") - 1
        inside = (pos >= 0) & (bounds <= ends[np.clip(pos, 0, None)])
        labels[inside] = label
    return _compress(bounds, labels)


def _compress(bounds: np.ndarray, labels: np.ndarray) -> _Segments:
    keep = np.ones(len(labels), dtype=bool)
    keep[1:] = labels[1:] != labels[:-1]
    return _Segments(bounds[keep], labels[keep])


class NetworkIndex:
    """Membership of addresses in one or more labelled network lists.

    ``NetworkIndex.build([list_a, list_b])``; ``lookup`` returns, per row, the position of the
    first list containing the address (0, 1, …) or null. Built once, searched many times.
    """

    def __init__(self, v4: _Segments, v6: _Segments, sizes: list[int]) -> None:
        self._v4 = v4
        self._v6 = v6
        self.sizes = sizes

    @classmethod
    def build(cls, lists: Sequence[Iterable[str]]) -> NetworkIndex:
        """Index ``lists`` (addresses or CIDRs, host bits masked). Raises ValueError on garbage.

        Runs on every analyze over ~80,000 cloud and crawler networks, where one ipaddress
        object per network cost 0.5-1.6 s of a 2 s cron budget; see :func:`_parse_list`.
        """
        v4_groups: list[tuple[np.ndarray, np.ndarray]] = []
        v6_groups: list[list[tuple[int, int]]] = []
        sizes = []
        for networks in lists:
            texts = list(networks)
            starts, ends, v6 = _parse_list(texts)
            v4_groups.append((starts, ends))
            v6_groups.append(v6)
            sizes.append(len(texts))
        return cls(_segments_v4(v4_groups), _segments_v6(v6_groups), sizes)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The index as plain arrays (``from_arrays`` reads them back): what a cache stores."""
        return {
            "v4_bounds": self._v4.bounds, "v4_labels": self._v4.labels,
            "v6_bounds": self._v6.bounds, "v6_labels": self._v6.labels,
            "sizes": np.array(self.sizes, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NetworkIndex:
        """The index ``to_arrays`` gave. Raises ValueError unless the arrays have the shapes and
        types an index has (bounds strictly rising from 0, labels naming a list or -1): a cache
        file is read back, and a damaged one must be rebuilt, not searched."""
        sizes = np.asarray(arrays["sizes"])
        if sizes.dtype != np.int64 or sizes.ndim != 1:
            raise ValueError("sizes: expected a vector of int64")
        segments = []
        for name, dtype in (("v4", np.dtype(np.uint32)), ("v6", np.dtype("S16"))):
            bounds, labels = np.asarray(arrays[f"{name}_bounds"]), np.asarray(arrays[f"{name}_labels"])
            if bounds.dtype != dtype or labels.dtype != np.int32 or bounds.ndim != 1 or bounds.shape != labels.shape:
                raise ValueError(f"{name}: expected {dtype} bounds and as many int32 labels")
            if len(bounds) and (bounds[0] != np.zeros(1, dtype)[0] or not bool(np.all(bounds[1:] > bounds[:-1]))):
                raise ValueError(f"{name}: bounds do not rise from 0")
            if len(labels) and (labels.min() < -1 or labels.max() >= len(sizes)):
                raise ValueError(f"{name}: a label names no list")
            segments.append(_Segments(bounds, labels))
        return cls(segments[0], segments[1], [int(n) for n in sizes])

    def lookup(self, series: pl.Series) -> pl.Series:
        """Int32 label of the first list containing each address; null if none or not an address."""
        return self._lookup(series)[0]

    def _lookup(self, series: pl.Series) -> tuple[pl.Series, pl.Series]:
        """(labels, is-an-address) per row."""
        series = series.cast(pl.String)
        ints = ipv4_to_int(series)
        found = self._v4.find(ints.fill_null(0).to_numpy())
        frame = pl.DataFrame({"int": ints, "found": pl.Series(found, dtype=pl.Int32)})
        labels = frame.select(
            pl.when(pl.col("int").is_not_null() & (pl.col("found") >= 0)).then(pl.col("found"))
        ).to_series()
        valid = ints.is_not_null()
        rest = series.filter(ints.is_null() & series.is_not_null()).unique().to_list()
        if rest:
            v6_labels, v6_valid = self._lookup_v6(rest)
            if v6_labels:
                v6 = series.replace_strict(
                    list(v6_labels), list(v6_labels.values()), default=None, return_dtype=pl.Int32
                )
                labels = labels.fill_null(v6)
            valid = valid | series.is_in(pl.Series(v6_valid, dtype=pl.String).implode()).fill_null(False)
        return labels.alias(series.name), valid.alias(series.name)

    def _lookup_v6(self, texts: list[str]) -> tuple[dict[str, int], list[str]]:
        """Per distinct non-IPv4 value: (labels found, values that are addresses).

        IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are also searched among the IPv4 networks,
        which take precedence: a log may write the same client either way.
        """
        keys: list[str] = []
        packed: list[bytes] = []
        mapped_keys: list[str] = []
        mapped: list[int] = []
        for text in texts:
            raw = _packed_v6(text)
            if raw is None:
                continue
            keys.append(text)
            packed.append(raw)
            if raw[:12] == _MAPPED:
                mapped_keys.append(text)
                mapped.append(int.from_bytes(raw[12:], "big"))
        out: dict[str, int] = {}
        if keys:
            hits = self._v6.find(np.array(packed, dtype="S16"))
            out.update((k, int(h)) for k, h in zip(keys, hits, strict=True) if h >= 0)
        if mapped_keys:
            hits = self._v4.find(np.array(mapped, dtype=np.uint32))
            out.update((k, int(h)) for k, h in zip(mapped_keys, hits, strict=True) if h >= 0)
        return out, keys
