"""Network features per distinct address: version, neighbour prefix, ASN, country, datacenter.

Scrapers rent servers; people browse from homes and phones. Whether an address belongs to a
cloud or hosting network is one of the strongest single signals, and it comes from three places
in order of precision: the providers' published ranges (``botguard ranges update``), the
analyst's own ``network.datacenter_cidrs``, and the AS number (MaxMind ASN database) against
``network.datacenter_asns``.

Every lookup runs once per *distinct* address. MaxMind databases are optional: a path that is
null, missing or unreadable leaves those columns null and adds a line to
:attr:`NetworkLookup.warnings` (the CLI prints them; tests run with warnings as errors, so
nothing here uses :mod:`warnings`).
"""

from __future__ import annotations

from bisect import bisect_right
from contextlib import suppress
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import polars as pl

from botguard.config import Config
from botguard.iputil import NetworkIndex, ip_version, ipv4_to_int, prefix
from botguard.ranges import RangeSet

__all__ = ["NETWORK_SCHEMA", "NetworkLookup", "network_features"]

#: One row per distinct address.
from botguard.schema import NETWORK_SCHEMA

# Where each field lives across GeoLite2/GeoIP2 ASN, ISP, Country, City and Enterprise records.
_ASN_PATHS = (("autonomous_system_number",), ("traits", "autonomous_system_number"))
_ORG_PATHS = (
    ("autonomous_system_organization",),
    ("traits", "autonomous_system_organization"),
    ("organization",),
    ("isp",),
)
_COUNTRY_PATHS = (("country", "iso_code"), ("registered_country", "iso_code"))


def _dig(record: dict[str, Any] | None, paths: tuple[tuple[str, ...], ...]) -> Any:
    if record is None:
        return None
    for path in paths:
        node: Any = record
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


_Fields = tuple[int | None, str | None, str | None]


def _fields(record: dict[str, Any] | None) -> _Fields:
    """(asn, as_org, country) of one record; a value of the wrong type counts as unknown."""
    asn, org, country = _dig(record, _ASN_PATHS), _dig(record, _ORG_PATHS), _dig(record, _COUNTRY_PATHS)
    return (asn if isinstance(asn, int) and not isinstance(asn, bool) else None,
            org if isinstance(org, str) else None, country if isinstance(country, str) else None)


class NetworkLookup:
    """Open MaxMind readers and range indexes once; compute features for many batches.

    Use as a context manager (or call :meth:`close`). ``warnings`` collects human-readable
    problems (missing or broken databases, failed lookups) without raising.
    """

    def __init__(self, cfg: Config, ranges: RangeSet | None = None) -> None:
        self.cfg = cfg
        self.ranges = ranges
        self.warnings: list[str] = []
        self._readers: list[tuple[str, Any]] = []
        self._lookup_errors: dict[str, int] = {}
        net = cfg.network
        seen: set[Path] = set()
        for key, path in (("asn_db", net.asn_db), ("city_db", net.city_db),
                          ("country_db", net.country_db)):
            if path is None:
                continue
            resolved = Path(path).expanduser()
            if resolved in seen:
                continue
            seen.add(resolved)
            reader = self._open(key, resolved)
            if reader is not None:
                self._readers.append((f"network.{key} ({resolved})", reader))
        if net.asn_db is None:
            self.warnings.append(
                "network.asn_db is not set: asn and as_org are unknown and datacenter_asns "
                "cannot be used (a free GeoLite2-ASN database works)"
            )
        if net.country_db is None and net.city_db is None:
            self.warnings.append("network.country_db and city_db are not set: country unknown")
        self._cidrs = NetworkIndex.build([net.datacenter_cidrs]) if net.datacenter_cidrs else None
        self._dc_sources = ranges.names_of_kind("cloud", "datacenter") if ranges else []
        self._cdn_sources = ranges.names_of_kind("cdn") if ranges else []

    def _open(self, key: str, path: Path) -> Any:
        if not path.is_file():
            self.warnings.append(f"network.{key}: {path} not found; its columns stay unknown")
            return None
        try:
            return maxminddb.open_database(str(path))
        except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
            self.warnings.append(f"network.{key}: cannot open {path} as a MaxMind DB ({exc})")
            return None

    def close(self) -> None:
        for _, reader in self._readers:
            with suppress(Exception):
                reader.close()
        self._readers = []

    def __enter__(self) -> NetworkLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ features
    def features(self, ips: pl.Series) -> pl.DataFrame:
        """One row per distinct non-null ip, columns as in :data:`NETWORK_SCHEMA`."""
        distinct = ips.cast(pl.String).drop_nulls().unique(maintain_order=True).alias("ip")
        net = self.cfg.network
        frame = pl.DataFrame({
            "ip": distinct,
            "ip_version": ip_version(distinct),
            "prefix": prefix(distinct, net.prefix_v4, net.prefix_v6),
        })
        frame = frame.hstack(self._maxmind(distinct))
        cdn = (
            self.ranges.lookup(distinct, self._cdn_sources)
            if self.ranges is not None and self._cdn_sources
            else pl.repeat(None, len(distinct), dtype=pl.String, eager=True)
        )
        return frame.hstack([*self._datacenter(frame), cdn.alias("cdn")]).select(
            [pl.col(c).cast(t) for c, t in NETWORK_SCHEMA.items()]
        )

    def _maxmind(self, ips: pl.Series) -> pl.DataFrame:
        """ASN, organisation and country per address: per field, the first database that
        knows it."""
        schema = {"asn": pl.Int64, "as_org": pl.String, "country": pl.String}
        if not self._readers:  # no database: nothing to look up, address by address
            return pl.DataFrame({c: pl.repeat(None, len(ips), dtype=t, eager=True) for c, t in schema.items()})
        ints = ipv4_to_int(ips)
        is_v4 = ints.is_not_null()
        v4_ints = ints.filter(is_v4).sort().to_numpy()
        others = ips.filter(~is_v4).to_list()
        # Lookups fill rows in this order (IPv4 by address, then the rest); the inverse
        # permutation puts them back in the order of ``ips``.
        rows = pl.int_range(len(ips), dtype=pl.UInt32, eager=True)
        filled = pl.concat([rows.filter(is_v4).gather(ints.filter(is_v4).arg_sort()), rows.filter(~is_v4)])
        inverse = filled.arg_sort()
        per_db = []
        for label, reader in self._readers:
            records, bounds = self._walk_v4(label, reader, v4_ints)
            counts = np.diff(np.asarray(bounds, dtype=np.int64), prepend=0).astype(np.int64)
            shared = pl.Series(np.repeat(np.arange(len(records)), counts))
            v4 = pl.DataFrame(records, schema=schema, orient="row")[shared]
            rest = pl.DataFrame([_fields(self._get(label, reader, ip)[0]) for ip in others], schema=schema, orient="row")
            per_db.append(pl.concat([v4, rest])[inverse])
        self._report_lookup_errors()
        out = per_db[0]
        for later in per_db[1:]:
            out = out.with_columns(pl.col(c).fill_null(later[c]) for c in schema)
        return out

    def _walk_v4(self, label: str, reader: Any, ints: np.ndarray) -> tuple[list[_Fields], list[int]]:
        """Fields for sorted IPv4 addresses and where each lookup's share ends: one lookup per
        database network they fall in, since the lookup names the network's prefix and every
        later address inside it shares the record. Clients cluster (a provider's /24, a
        swarm's /16), and a City record costs more to decode than the walk. Only the three
        fields are kept: thousands of live records would keep the garbage collector busy."""
        records: list[_Fields] = []
        bounds: list[int] = []
        sorted_ints = ints.tolist()
        i = 0
        while i < len(sorted_ints):
            ip = sorted_ints[i]
            record, plen = self._get(label, reader, IPv4Address(ip))
            last = ip | ((1 << (32 - plen)) - 1) if 0 <= plen <= 32 else ip
            i = bisect_right(sorted_ints, last, i + 1) if last != ip else i + 1
            records.append(_fields(record))
            bounds.append(i)
        return records, bounds

    def _get(self, label: str, reader: Any, address: str | IPv4Address) -> tuple[dict[str, Any] | None, int]:
        """The address's record and its network's prefix length (-1 when the lookup failed)."""
        try:
            record, plen = reader.get_with_prefix_len(address)
        except maxminddb.InvalidDatabaseError as exc:
            # A corrupt tree or data section: count it, keep going with nulls.
            key = f"{label}: {exc}"
            self._lookup_errors[key] = self._lookup_errors.get(key, 0) + 1
            return None, -1
        except ValueError:
            return None, -1  # an IPv6 address in an IPv4-only database, or not an address
        return (record if isinstance(record, dict) else None), int(plen)

    def _report_lookup_errors(self) -> None:
        for message, count in self._lookup_errors.items():
            self.warnings.append(f"{count} lookup(s) failed, left unknown: {message}")
        self._lookup_errors.clear()

    def _datacenter(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Most precise evidence first: published ranges, then configured CIDRs, then ASN."""
        ips = frame["ip"]
        n = len(ips)
        by_range = (
            self.ranges.lookup(ips, self._dc_sources)
            if self.ranges is not None and self._dc_sources
            else pl.Series([None] * n, dtype=pl.String)
        )
        by_cidr = (
            self._cidrs.lookup(ips).is_not_null()
            if self._cidrs is not None
            else pl.Series([False] * n, dtype=pl.Boolean)
        )
        asns = self.cfg.network.datacenter_asns
        by_asn = frame["asn"].is_in(pl.Series(asns, dtype=pl.Int64).implode()).fill_null(False)
        # "Not a datacenter" is only claimed when some source could have said otherwise.
        could_tell = pl.lit(bool(self._dc_sources) or self._cidrs is not None)
        if asns:
            could_tell = could_tell | pl.col("asn").is_not_null()
        could_tell = could_tell & pl.col("ip_version").is_not_null()
        out = pl.DataFrame({
            "asn": frame["asn"], "ip_version": frame["ip_version"],
            "by_range": by_range, "by_cidr": by_cidr, "by_asn": by_asn,
        }).select(
            pl.when(pl.col("by_range").is_not_null()).then(pl.col("by_range"))
            .when(pl.col("by_cidr")).then(pl.lit("cidr"))
            .when(pl.col("by_asn")).then(pl.lit("asn"))
            .otherwise(None)
            .alias("datacenter_source"),
            could_tell.alias("could_tell"),
        )
        return out.select(
            pl.when(pl.col("datacenter_source").is_not_null()).then(True)
            .when(pl.col("could_tell")).then(False)
            .otherwise(None)
            .alias("is_datacenter"),
            "datacenter_source",
        )


def network_features(
    ips: pl.Series,
    cfg: Config,
    ranges: RangeSet | None,
    *,
    warnings: list[str] | None = None,
) -> pl.DataFrame:
    """Network features for the distinct addresses in ``ips`` (see :data:`NETWORK_SCHEMA`).

    Problems (missing or broken MaxMind files) are appended to ``warnings`` when a list is given.
    For many batches, keep one :class:`NetworkLookup` instead so the databases are opened once.
    """
    with NetworkLookup(cfg, ranges) as lookup:
        frame = lookup.features(ips)
    if warnings is not None:
        warnings.extend(lookup.warnings)
    return frame
