"""IP helpers (iputil) and per-address network features (MaxMind, ranges, datacenter)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botguard.config import Config, load_config
from botguard.features.network import NETWORK_SCHEMA, NetworkLookup, network_features
from botguard.iputil import NetworkIndex, in_networks, ip_version, ipv4_to_int, prefix
from botguard.ranges import RangeSet


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


def _with_network(cfg: Config, **changes: object) -> Config:
    return cfg.model_copy(update={"network": cfg.network.model_copy(update=changes)})


# --------------------------------------------------------------------------- iputil
def test_ipv4_to_int() -> None:
    s = pl.Series("ip", ["0.0.0.0", "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4",
                         "1.2.3", "1.2.3.4.5", "::1", "", None])
    out = ipv4_to_int(s)
    assert out.dtype == pl.UInt32 and out.name == "ip"
    assert out.to_list() == [0, 16909060, 2**32 - 1, None, None, None, None, None, None, None]


def test_ip_version() -> None:
    s = pl.Series(["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "nope", ":", None])
    assert ip_version(s).to_list() == [4, 6, 6, None, None, None]
    assert ip_version(s).dtype == pl.Int8


def test_prefix_strings() -> None:
    s = pl.Series("ip", ["203.0.113.77", "2001:db8:1:2:3:4:5:6", "2001:db8::1", "x", None])
    assert prefix(s, 24, 64).to_list() == [
        "203.0.113.0/24", "2001:db8:1:2::/64", "2001:db8::/64", None, None,
    ]
    assert prefix(s, 16, 48).to_list()[:2] == ["203.0.0.0/16", "2001:db8:1::/48"]
    assert prefix(s, 32, 128).to_list()[:2] == ["203.0.113.77/32", "2001:db8:1:2:3:4:5:6/128"]
    assert prefix(pl.Series(["255.255.255.255"]), 8, 64).to_list() == ["255.0.0.0/8"]
    with pytest.raises(ValueError):
        prefix(s, 33, 64)


@settings(max_examples=100, deadline=None)
@given(
    addresses=st.lists(
        st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str), max_size=30
    ),
    v4_len=st.integers(0, 32),
    v6_len=st.integers(0, 128),
)
def test_prefix_matches_ipaddress(addresses: list[str], v4_len: int, v6_len: int) -> None:
    def expected(address: str) -> str:
        ip = ipaddress.ip_address(address)
        return str(ipaddress.ip_network((ip, v4_len if ip.version == 4 else v6_len), strict=False))

    got = prefix(pl.Series(addresses, dtype=pl.String), v4_len, v6_len).to_list()
    assert got == [expected(a) for a in addresses]


def test_in_networks_basic() -> None:
    s = pl.Series(["192.0.2.5", "192.0.3.5", "2001:db8::5", "2001:db9::", "::ffff:192.0.2.9",
                   "junk", None])
    out = in_networks(s, ["192.0.2.0/24", "2001:db8::/32"])
    assert out.to_list() == [True, False, True, False, True, None, None]
    assert in_networks(s, []).to_list() == [False, False, False, False, False, None, None]
    with pytest.raises(ValueError, match="not an IP network"):
        in_networks(s, ["192.0.2.0/24", "nonsense"])


def test_index_edges_of_the_address_space() -> None:
    index = NetworkIndex.build([["0.0.0.0/32", "255.255.255.255/32", "ffff::/16", "::/128"]])
    s = pl.Series(["0.0.0.0", "0.0.0.1", "255.255.255.254", "255.255.255.255",
                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", "::1"])
    assert index.lookup(s).to_list() == [0, None, None, 0, 0, 0, None]


# Small address spaces so that random networks and addresses actually overlap.
_v4_nets = st.builds(
    lambda low, length: str(ipaddress.ip_network((0x0A000000 + low, length), strict=False)),
    st.integers(0, 2**12 - 1), st.integers(20, 32),
)
_v6_nets = st.builds(
    lambda low, length: str(ipaddress.ip_network((0x20010DB8 << 96 | low, length), strict=False)),
    st.integers(0, 2**12 - 1), st.integers(116, 128),
)
_v4_addrs = st.integers(0, 2**12 - 1).map(lambda low: str(ipaddress.IPv4Address(0x0A000000 + low)))
_v6_addrs = st.integers(0, 2**12 - 1).map(
    lambda low: str(ipaddress.IPv6Address(0x20010DB8 << 96 | low))
)


@settings(max_examples=150, deadline=None)
@given(
    networks=st.lists(st.one_of(_v4_nets, _v6_nets), max_size=12),
    addresses=st.lists(st.one_of(_v4_addrs, _v6_addrs, st.none()), max_size=40),
)
def test_in_networks_matches_brute_force(networks: list[str], addresses: list[str | None]) -> None:
    nets = [ipaddress.ip_network(n) for n in networks]
    expected = [
        None if a is None else any(ipaddress.ip_address(a) in n for n in nets) for a in addresses
    ]
    assert in_networks(pl.Series(addresses, dtype=pl.String), networks).to_list() == expected


@settings(max_examples=100, deadline=None)
@given(
    lists=st.lists(st.lists(st.one_of(_v4_nets, _v6_nets), max_size=6), min_size=1, max_size=4),
    addresses=st.lists(st.one_of(_v4_addrs, _v6_addrs), max_size=40),
)
def test_index_labels_first_matching_list(lists: list[list[str]], addresses: list[str]) -> None:
    parsed = [[ipaddress.ip_network(n) for n in group] for group in lists]

    def first(address: str) -> int | None:
        ip = ipaddress.ip_address(address)
        return next((i for i, group in enumerate(parsed) if any(ip in n for n in group)), None)

    got = NetworkIndex.build(lists).lookup(pl.Series(addresses, dtype=pl.String)).to_list()
    assert got == [first(a) for a in addresses]


# --------------------------------------------------------------------------- features
@pytest.fixture
def mmdb_cfg(cfg: Config, fixtures_dir: Path) -> Config:
    mmdb = fixtures_dir / "mmdb"
    return _with_network(
        cfg,
        asn_db=str(mmdb / "test-asn.mmdb"),
        city_db=str(mmdb / "test-city.mmdb"),
        country_db=str(mmdb / "test-country.mmdb"),
        datacenter_asns=[64502],
        datacenter_cidrs=["192.0.2.192/26"],
    )


IPS = pl.Series("client_ip", [
    "192.0.2.10", "192.0.2.200", "198.51.100.7", "203.0.113.9", "2001:db8:1::5", "10.0.0.1",
    "192.0.2.10", None, "2001:db8:ffff::1",
])


def test_network_features_from_fixture_databases(mmdb_cfg: Config) -> None:
    ranges = RangeSet({"aws": ["203.0.113.0/26"]}, kinds={"aws": "cloud"})
    warnings: list[str] = []
    out = network_features(IPS, mmdb_cfg, ranges, warnings=warnings)
    assert warnings == []
    assert dict(out.schema) == NETWORK_SCHEMA
    rows = {r["ip"]: r for r in out.to_dicts()}
    assert list(rows) == ["192.0.2.10", "192.0.2.200", "198.51.100.7", "203.0.113.9",
                          "2001:db8:1::5", "10.0.0.1", "2001:db8:ffff::1"]
    assert rows["192.0.2.10"] == {
        "ip": "192.0.2.10", "ip_version": 4, "prefix": "192.0.2.0/24", "asn": 64500,
        "as_org": "Example Hosting GmbH", "country": "DE", "is_datacenter": False,
        "datacenter_source": None, "cdn": None,
    }
    assert rows["192.0.2.200"]["asn"] == 64501
    assert (rows["192.0.2.200"]["is_datacenter"], rows["192.0.2.200"]["datacenter_source"]) == (
        True, "cidr")
    assert (rows["198.51.100.7"]["is_datacenter"], rows["198.51.100.7"]["datacenter_source"]) == (
        True, "asn")
    assert rows["198.51.100.7"]["country"] == "US"
    # In AWS's published ranges; the country comes from registered_country.
    assert rows["203.0.113.9"]["datacenter_source"] == "aws"
    assert rows["203.0.113.9"]["country"] == "FR"
    assert rows["2001:db8:1::5"]["prefix"] == "2001:db8:1::/48"  # its /48: network.prefix_v6
    assert (rows["2001:db8:1::5"]["ip_version"], rows["2001:db8:1::5"]["country"]) == (6, "NL")
    assert rows["10.0.0.1"]["asn"] is None and rows["10.0.0.1"]["is_datacenter"] is False


def test_range_source_wins_over_cidr_and_asn(mmdb_cfg: Config) -> None:
    ranges = RangeSet({"gptbot": ["198.51.100.0/24"], "hetzner": ["198.51.100.0/25"]},
                      kinds={"gptbot": "crawler", "hetzner": "cloud"})
    out = network_features(pl.Series(["198.51.100.7", "198.51.100.200"]), mmdb_cfg, ranges)
    # Crawler lists do not make an address a datacenter; the ASN still does.
    assert out["datacenter_source"].to_list() == ["hetzner", "asn"]


def test_nothing_loaded_means_unknown(cfg: Config) -> None:
    warnings: list[str] = []
    out = network_features(IPS, cfg, None, warnings=warnings)
    assert out.height == 7
    for column in ("asn", "as_org", "country", "is_datacenter", "datacenter_source"):
        assert out[column].null_count() == out.height, column
    assert any("asn_db" in w for w in warnings)
    assert any("country" in w for w in warnings)


def test_ranges_alone_can_tell(cfg: Config) -> None:
    ranges = RangeSet({"aws": ["203.0.113.0/26"]}, kinds={"aws": "cloud"})
    out = network_features(pl.Series(["203.0.113.9", "192.0.2.1", "junk"]), cfg, ranges)
    assert out["is_datacenter"].to_list() == [True, False, None]


def test_missing_database_file_gives_nulls_and_a_warning(cfg: Config, tmp_path: Path) -> None:
    missing = _with_network(cfg, asn_db=str(tmp_path / "GeoLite2-ASN.mmdb"))
    warnings: list[str] = []
    out = network_features(IPS, missing, None, warnings=warnings)
    assert out["asn"].null_count() == out.height
    assert any("not found" in w and "GeoLite2-ASN.mmdb" in w for w in warnings)


def test_random_bytes_are_not_a_database(cfg: Config, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(bytes(range(256)) * 16)
    warnings: list[str] = []
    out = network_features(IPS, _with_network(cfg, country_db=str(broken)), None,
                           warnings=warnings)
    assert out["country"].null_count() == out.height
    assert any("cannot open" in w and "broken.mmdb" in w for w in warnings)


def test_lookup_object_is_reused_across_batches(mmdb_cfg: Config) -> None:
    with NetworkLookup(mmdb_cfg) as lookup:
        first = lookup.features(pl.Series(["192.0.2.10"]))
        second = lookup.features(pl.Series(["198.51.100.7", "2001:db8:1::5"]))
        empty = lookup.features(pl.Series([], dtype=pl.String))
    assert first["asn"].to_list() == [64500]
    assert second["asn"].to_list() == [64502, 64500]
    assert empty.height == 0 and dict(empty.schema) == NETWORK_SCHEMA


# --------------------------------------------------------------------------- MaxMind test data
@pytest.fixture
def maxmind(shared_data: Path) -> Path:
    return shared_data / "maxmind-test-data" / "test-data"


def test_maxmind_test_databases(cfg: Config, maxmind: Path) -> None:
    real = _with_network(
        cfg,
        asn_db=str(maxmind / "GeoLite2-ASN-Test.mmdb"),
        city_db=str(maxmind / "GeoIP2-City-Test.mmdb"),
        country_db=str(maxmind / "GeoLite2-Country-Test.mmdb"),
        datacenter_asns=[1221],
    )
    warnings: list[str] = []
    out = network_features(pl.Series(["1.128.0.0", "81.2.69.142", "2001:218::1", "12.81.92.1"]),
                           real, None, warnings=warnings)
    assert warnings == []
    assert out["asn"].to_list() == [1221, None, None, 7018]
    assert out["as_org"].to_list() == ["Telstra Pty Ltd", None, None, "AT&T Services"]
    assert out["country"].to_list()[1:3] == ["GB", "JP"]
    assert out["is_datacenter"].to_list() == [True, None, None, False]
    assert out["datacenter_source"].to_list()[0] == "asn"


def test_country_database_alone(cfg: Config, maxmind: Path) -> None:
    only_country = _with_network(cfg, country_db=str(maxmind / "GeoLite2-Country-Test.mmdb"))
    out = network_features(pl.Series(["81.2.69.142"]), only_country, None)
    assert out["country"].to_list() == ["GB"]


def test_isp_database_serves_as_asn_database(cfg: Config, maxmind: Path) -> None:
    isp = _with_network(cfg, asn_db=str(maxmind / "GeoIP2-ISP-Test.mmdb"))
    out = network_features(pl.Series(["1.128.0.0"]), isp, None)
    assert (out["asn"][0], out["as_org"][0]) == (1221, "Telstra Pty Ltd")


@pytest.mark.parametrize(
    "name",
    [
        "MaxMind-DB-test-broken-search-tree-24.mmdb",
        "MaxMind-DB-test-broken-pointers-24.mmdb",
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    ],
)
def test_broken_maxmind_databases_do_not_crash(cfg: Config, maxmind: Path, name: str) -> None:
    broken = _with_network(cfg, asn_db=str(maxmind / name), city_db=str(maxmind / name))
    warnings: list[str] = []
    ips = pl.Series(["1.1.1.1", "1.1.1.3", "1.1.1.32", "81.2.69.142", "2001:db8::1"])
    out = network_features(ips, broken, None, warnings=warnings)
    assert out.height == 5
    assert dict(out.schema) == NETWORK_SCHEMA


def _addresses_around(reader: object, limit: int = 400) -> list[str]:
    """Each IPv4 network's first, middle and last address and its two outside neighbours: where
    a walk that shares one lookup across a network could go wrong."""
    # MaxMind's own test trees put small networks at 1.1.1.0/26 (and the iterator cannot
    # walk an IPv4-only tree): every address there, as well.
    out = {f"1.1.1.{k}" for k in range(64)}
    try:
        for k, (network, _) in enumerate(reader):  # type: ignore[attr-defined]
            if k >= limit:
                break
            if network.version != 4:
                continue
            first, last = int(network.network_address), int(network.broadcast_address)
            for value in (first - 1, first, (first + last) // 2, last, last + 1):
                if 0 <= value < 2**32:
                    out.add(str(ipaddress.IPv4Address(value)))
    except ValueError:
        pass
    return sorted(out)


@pytest.mark.parametrize("name", [
    "GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb", "GeoLite2-Country-Test.mmdb",
    "MaxMind-DB-test-ipv4-24.mmdb", "MaxMind-DB-test-mixed-28.mmdb", "MaxMind-DB-no-ipv4-search-tree.mmdb",
])
def test_one_lookup_per_network_gives_what_each_address_would(cfg: Config, maxmind: Path, name: str) -> None:
    """IPv4 clients are looked up one database network at a time (the walk): every address
    must get exactly what its own lookup gives, at the edges of networks too."""
    import maxminddb

    path = maxmind / name
    with maxminddb.open_database(str(path)) as reader:
        ips = [*_addresses_around(reader), "2001:218::1", "::1", "2001:db8::1"]
        expected = []
        for ip in ips:
            try:
                record = reader.get(ip)
            except ValueError:
                record = None
            expected.append(_expected_fields(record))
    db = _with_network(cfg, asn_db=str(path), city_db=None, country_db=None)
    with NetworkLookup(db) as lookup:
        got = lookup._maxmind(pl.Series("ip", ips))
    assert len(ips) > 20
    assert got.rows() == expected


def _expected_fields(record: object) -> tuple[object, object, object]:
    if not isinstance(record, dict):
        return (None, None, None)
    traits = record.get("traits") if isinstance(record.get("traits"), dict) else {}
    asn = record.get("autonomous_system_number", traits.get("autonomous_system_number"))
    org = next((v for v in (record.get("autonomous_system_organization"), traits.get("autonomous_system_organization"),
                            record.get("organization"), record.get("isp")) if v is not None), None)
    country = next((v.get("iso_code") for v in (record.get("country"), record.get("registered_country"))
                    if isinstance(v, dict) and v.get("iso_code") is not None), None)
    return (asn if isinstance(asn, int) else None, org if isinstance(org, str) else None,
            country if isinstance(country, str) else None)
