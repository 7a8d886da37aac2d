"""NetworkIndex.build against plain ipaddress.

build parses canonical IPv4 CIDRs in Polars and IPv6 with inet_pton, and leaves everything
else to ipaddress; these tests pin that the shortcut changes nothing a caller can observe:
which list each address lands in, the per-list sizes, and the error for the first bad entry.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterator

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botguard.iputil import NetworkIndex

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_MAX = 2**32 - 1
_V6_MAX = 2**128 - 1


def _reference(lists: list[list[str]]) -> list[list[Network]]:
    return [[ipaddress.ip_network(t.strip(), strict=False) for t in group] for group in lists]


Span = tuple[int, int, int]  # IP version, first and last address


def _spans(parsed: list[list[Network]]) -> list[list[Span]]:
    return [
        [(n.version, int(n.network_address), int(n.broadcast_address)) for n in group]
        for group in parsed
    ]


def _expected(spans: list[list[Span]], address: str) -> int | None:
    """The label lookup should give, by brute force over every network of every list.

    IPv4-mapped IPv6 addresses are also matched against the IPv4 networks, which win.
    """

    def first(version: int, value: int) -> int | None:
        return next(
            (
                label
                for label, group in enumerate(spans)
                if any(v == version and low <= value <= high for v, low, high in group)
            ),
            None,
        )

    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        v4 = first(4, int(ip.ipv4_mapped))
        if v4 is not None:
            return v4
    return first(ip.version, int(ip))


def _probes(parsed: list[list[Network]], extra: list[str]) -> list[str]:
    """Every network's first and last address and their outside neighbours, plus ``extra``."""
    out = list(extra)
    for group in parsed:
        for net in group:
            low, high = int(net.network_address), int(net.broadcast_address)
            top = _V4_MAX if net.version == 4 else _V6_MAX
            make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
            out += [str(make(v)) for v in (low - 1, low, high, high + 1) if 0 <= v <= top]
    return out


def _check(lists: list[list[str]], extra: list[str], keep: int | None = None) -> None:
    """Compare labels for the probes (a random ``keep`` of them, if given) and the sizes."""
    parsed = _reference(lists)
    probes = _probes(parsed, extra)
    if keep is not None and len(probes) > keep:
        probes = random.Random(keep).sample(probes, keep)
    index = NetworkIndex.build(lists)
    assert index.sizes == [len(group) for group in lists]
    got = index.lookup(pl.Series(probes, dtype=pl.String)).to_list()
    spans = _spans(parsed)
    assert got == [_expected(spans, a) for a in probes]


# --------------------------------------------------------------------------- strategies
# Mostly the whole space, but also two small corners, so that networks overlap and the
# boundaries of one land inside another.
_v4_ints = st.one_of(
    st.integers(0, _V4_MAX),
    st.integers(0x0A000000, 0x0A000FFF),
    st.integers(_V4_MAX - 0xFFF, _V4_MAX),
)
_v6_ints = st.one_of(
    st.integers(0, _V6_MAX),
    st.integers(0x20010DB8 << 96, (0x20010DB8 << 96) + 0xFFFF),
    st.integers(0xFFFF << 32, (0xFFFF << 32) + 0xFFFF),  # IPv4-mapped
    st.integers(_V6_MAX - 0xFFFF, _V6_MAX),
)
# ASCII whitespace stays on the fast paths; the rest must reach ipaddress and still be stripped.
_space = st.sampled_from(
    ["", "", "", " ", "\t", "\n", " \r\n", "\x0b\x0c", "\xa0", "\u2003", "\x1c"]
)


@st.composite
def _v4_text(draw: st.DrawFn) -> str:
    value = draw(_v4_ints)
    address = str(ipaddress.IPv4Address(value))
    length = draw(st.integers(0, 32))
    form = draw(st.sampled_from(["cidr", "cidr", "cidr", "bare", "netmask", "hostmask", "zeros"]))
    if form == "bare":
        text = address
    elif form == "netmask":
        text = f"{address}/{ipaddress.IPv4Network((0, length)).netmask}"
    elif form == "hostmask":
        text = f"{address}/{ipaddress.IPv4Network((0, length)).hostmask}"
    elif form == "zeros":
        text = f"{address}/0{length}"
    else:
        text = f"{address}/{length}"
    return draw(_space) + text + draw(_space)


@st.composite
def _v6_text(draw: st.DrawFn) -> str:
    value = draw(_v6_ints)
    ip = ipaddress.IPv6Address(value)
    form = draw(st.sampled_from(["compressed", "exploded", "upper", "dotted", "zone"]))
    if form == "exploded":
        address = ip.exploded
    elif form == "upper":
        address = ip.compressed.upper()
    elif form == "dotted":  # the last 32 bits as a dotted quad, as in ::ffff:192.0.2.1
        head = ipaddress.IPv6Address(value >> 32 << 32).exploded.rsplit(":", 2)[0]
        address = f"{head}:{ipaddress.IPv4Address(value & _V4_MAX)}"
    elif form == "zone":
        address = f"{ip.compressed}%eth0"
    else:
        address = ip.compressed
    length = draw(st.one_of(st.none(), st.integers(0, 128)))
    text = address if length is None else f"{address}/{length}"
    return draw(_space) + text + draw(_space)


_networks = st.lists(st.one_of(_v4_text(), _v6_text()), max_size=8)
_addresses = st.lists(
    st.one_of(
        _v4_ints.map(lambda v: str(ipaddress.IPv4Address(v))),
        _v6_ints.map(lambda v: str(ipaddress.IPv6Address(v))),
    ),
    max_size=20,
)


# --------------------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lists=st.lists(_networks, min_size=1, max_size=4), addresses=_addresses)
def test_build_matches_ipaddress(lists: list[list[str]], addresses: list[str]) -> None:
    _check(lists, addresses)


@settings(max_examples=100, deadline=None)
@given(
    value=_v4_ints,
    length=st.integers(0, 32),
    before=_space,
    after=_space,
)
def test_v4_host_bits_masked(value: int, length: int, before: str, after: str) -> None:
    text = f"{before}{ipaddress.IPv4Address(value)}/{length}{after}"
    _check([[text]], [])


@settings(max_examples=100, deadline=None)
@given(value=_v6_ints, length=st.integers(0, 128), before=_space, after=_space)
def test_v6_host_bits_masked(value: int, length: int, before: str, after: str) -> None:
    text = f"{before}{ipaddress.IPv6Address(value)}/{length}{after}"
    _check([[text]], [])


def test_edges_of_the_address_spaces() -> None:
    lists = [
        ["0.0.0.0/32", "255.255.255.255", "::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        ["0.0.0.0/0", "::/0"],
        ["::ffff:0:0/96", "10.0.0.0/8"],
    ]
    _check(lists, ["::ffff:10.1.2.3", "::ffff:0.0.0.0", "::ffff:255.255.255.255", "1.2.3.4"])


def test_any_iterables_and_empty_lists() -> None:
    def gen() -> Iterator[str]:
        yield "192.0.2.0/24"
        yield "2001:db8::/32"

    index = NetworkIndex.build([[], gen(), ("198.51.100.7",), {"192.0.2.128/25"}])
    assert index.sizes == [0, 2, 1, 1]
    got = index.lookup(pl.Series(["192.0.2.200", "198.51.100.7", "2001:db8::1", "203.0.113.1"]))
    assert got.to_list() == [1, 2, 1, None]
    assert NetworkIndex.build([]).sizes == []


def test_realistic_lists_without_files() -> None:
    """Range-file shaped input, generated here so that the test needs no data on disk."""
    rng = random.Random(20261125)
    lists: list[list[str]] = []
    for size in (4000, 300, 40):
        group = []
        for _ in range(size):
            address: ipaddress.IPv4Address | ipaddress.IPv6Address
            if rng.random() < 0.75:
                length = rng.randint(8, 32)
                address = ipaddress.IPv4Address(rng.getrandbits(32))
            else:
                length = rng.randint(16, 128)
                address = ipaddress.IPv6Address(0x2000 << 112 | rng.getrandbits(113))
            group.append(str(ipaddress.ip_network((address, length), strict=False)))
        lists.append(group)
    lists[1] += lists[0][:50]  # shared networks: the earlier list wins
    extra = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(1000)]
    _check(lists, extra, keep=3000)


# --------------------------------------------------------------------------- errors
_GARBAGE = [
    "nonsense",
    "",
    "   ",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "01.2.3.4",
    "1.2.3.4/33",
    "1.2.3.4/",
    "1.2.3.4/8/8",
    "1.2.3.4 /8",
    "1.2.3.4/255.0.255.0",
    "/8",
    "\u0661.2.3.4",
    "1.2.3.4/\u0668",
    "1.2.3.4\x00",
    "\u200b1.2.3.4",  # zero-width space: not whitespace to str.strip()
    "1.2.3.4/8\u200b",
    "2001:db8::/32\u200b",
    "2001:db8::/129",
    "2001:db8::/-1",
    "2001:db8::g",
    "2001:db8:::1",
    "1:2:3:4:5:6:7:8:9",
    "12345::",
    "::1.2.3.04",
    "2001:db8::/64/1",
    "2001:db8::\x00",
    "\ud800",
    "1.2.3.0/24\ud800",
]


@pytest.mark.parametrize("bad", _GARBAGE)
def test_garbage_raises_with_the_text(bad: str) -> None:
    with pytest.raises(ValueError) as reference:
        ipaddress.ip_network(bad.strip(), strict=False)
    expected = f"not an IP network: {bad!r} ({reference.value})"
    lists = [["192.0.2.0/24", "2001:db8::/32"], ["198.51.100.0/24", bad, "also bad"]]
    with pytest.raises(ValueError, match=re.escape(expected)) as caught:
        NetworkIndex.build(lists)
    assert str(caught.value) == expected


def test_the_first_bad_entry_is_reported() -> None:
    lists = [["192.0.2.0/24", "2001:db8::/32"], ["fe80::/10", "bad one", "10.0.0.0/8", "bad two"]]
    with pytest.raises(ValueError, match="'bad one'"):
        NetworkIndex.build(lists)
    with pytest.raises(ValueError, match="'first'"):
        NetworkIndex.build([["first"], ["second"]])


def test_non_strings_fail_as_in_ipaddress_parsing() -> None:
    with pytest.raises(AttributeError):
        NetworkIndex.build([["192.0.2.0/24", None]])  # type: ignore[list-item]
    with pytest.raises(AttributeError):
        NetworkIndex.build([["192.0.2.0/24", 3232235520]])  # type: ignore[list-item]
