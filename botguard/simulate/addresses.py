"""Client addresses and the operators' published range files.

Three worlds of addresses, kept apart so labels stay honest:

* residential: access-network blocks of large consumer ISPs and mobile carriers (people, carrier
  NAT, swarm members, and scrapers that rent residential proxies);
* the cloud: real EC2 blocks, written out in AWS's ``ip-ranges.json`` format (bad bots on rented
  servers and people on VPNs);
* crawler operators: Google's and Bing's crawler blocks (written in their JSON format) and
  UptimeRobot's probe addresses (one per line), so a later stage can verify crawlers.

Every address is unique across the whole simulation, public (no private, loopback, multicast,
CGNAT or documentation space) and IPv6 is written compressed, as the parsers normalize it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Consumer ISP and mobile access blocks (spread over continents and many /16s).
RESIDENTIAL_V4 = (
    "73.0.0.0/8", "98.192.0.0/10", "68.32.0.0/11",  # Comcast
    "76.192.0.0/10", "99.0.0.0/10",  # AT&T
    "71.160.0.0/11", "108.0.0.0/11",  # Verizon
    "24.160.0.0/12", "97.96.0.0/11",  # Charter
    "99.224.0.0/11", "70.24.0.0/13",  # Rogers, Bell
    "79.192.0.0/10", "84.128.0.0/10", "87.128.0.0/10", "91.0.0.0/10", "93.192.0.0/10",  # DTAG
    "90.0.0.0/9", "92.128.0.0/10",  # Orange
    "81.128.0.0/11", "86.128.0.0/11",  # BT
    "82.0.0.0/11", "86.0.0.0/11",  # Virgin Media
    "83.32.0.0/11", "88.0.0.0/11",  # Telefonica
    "79.0.0.0/11", "87.0.0.0/11",  # TIM
    "1.128.0.0/11",  # Telstra
    "49.32.0.0/11", "122.160.0.0/12",  # Jio, Airtel
    "177.0.0.0/11", "189.0.0.0/11",  # Vivo, Claro
    "153.128.0.0/10", "106.128.0.0/10",  # NTT, KDDI
    "172.56.0.0/14",  # T-Mobile US (carrier NAT)
)
RESIDENTIAL_V6 = (
    "2601::/20", "2600:1700::/24", "2600:6c00::/24", "2600:1000::/24", "2607:fb90::/32",
    "2003::/19", "2a01:c000::/19", "2a00:23c0::/27", "2001:8003::/32", "2409:4000::/22",
)
#: Carrier-grade NAT and office gateways: shared by many people at once.
NAT_V4 = ("172.56.0.0/14", "90.0.0.0/9", "84.128.0.0/10", "99.0.0.0/10")

#: EC2 blocks (region) as AWS publishes them; rented servers and VPN exits live here.
CLOUD_V4 = (
    ("44.192.0.0/11", "us-east-1"), ("3.224.0.0/12", "us-east-1"), ("34.192.0.0/12", "us-east-1"),
    ("3.64.0.0/12", "eu-central-1"), ("35.80.0.0/12", "us-west-2"), ("52.208.0.0/13", "eu-west-1"),
    ("18.208.0.0/13", "us-east-1"), ("54.80.0.0/13", "us-east-1"), ("3.248.0.0/13", "eu-west-1"),
    ("35.72.0.0/13", "ap-northeast-1"), ("54.160.0.0/13", "us-east-1"),
    ("34.240.0.0/13", "eu-west-1"), ("108.128.0.0/13", "eu-west-1"), ("3.108.0.0/14", "ap-south-1"),
    ("52.4.0.0/14", "us-east-1"),
)
CLOUD_V6 = (
    ("2600:1f18::/33", "us-east-1"), ("2600:1f14::/34", "us-west-2"),
    ("2a05:d014::/35", "eu-central-1"), ("2a05:d018::/35", "eu-west-1"),
    ("2406:da14::/35", "ap-northeast-1"),
)

#: Google's common-crawler blocks: /27s of 66.249.64.0/20 and 192.178.4.0/22, and /64s.
GOOGLEBOT_V4 = tuple(f"66.249.{64 + i // 8}.{(i % 8) * 32}/27" for i in range(128)) + tuple(
    f"192.178.{4 + i // 8}.{(i % 8) * 32}/27" for i in range(32)
)
GOOGLEBOT_V6 = tuple(f"2001:4860:4801:{i:x}::/64" for i in range(0x10, 0x90))
BINGBOT_V4 = (
    "157.55.39.0/24", "207.46.13.0/24", "40.77.167.0/24", "13.66.139.0/24", "13.66.144.0/24",
    "52.167.144.0/24", "13.67.10.16/28", "13.69.66.240/28", "13.71.172.224/28",
    "139.217.52.0/28", "191.233.204.224/28", "20.36.108.32/28", "20.43.120.16/28",
    "40.79.131.208/28", "40.79.186.176/28", "52.231.148.0/28", "20.79.107.240/28",
    "51.105.67.0/28", "20.125.163.80/28", "40.77.188.0/22", "65.55.210.0/24", "199.30.24.0/23",
    "40.77.202.0/24", "40.77.139.0/25", "20.74.197.0/28", "20.15.133.160/27", "40.77.177.0/24",
    "40.77.178.0/23",
)
#: Hosting blocks UptimeRobot runs its probes in; the published list names single addresses.
UPTIMEROBOT_HOSTS_V4 = (
    "5.161.0.0/16", "49.13.0.0/16", "78.46.0.0/15", "128.140.0.0/17", "157.90.0.0/16",
    "138.197.0.0/16", "143.198.0.0/16", "159.223.0.0/16", "167.99.0.0/16",
)
UPTIMEROBOT_HOSTS_V6 = ("2a01:4f8::/32",)
#: Link-preview fetchers' own networks: Meta (AS32934), X/Twitter, Telegram, LinkedIn, and the
#: Google Cloud region Discord fetches from. None of them is written to ``ranges/``.
FACEBOOK_V4 = ("69.171.224.0/19", "173.252.64.0/18", "66.220.144.0/20", "69.63.176.0/20",
               "31.13.64.0/18")
FACEBOOK_V6 = ("2a03:2880::/32",)
TWITTER_V4 = ("199.16.156.0/22", "199.59.148.0/22")
TELEGRAM_V4 = ("149.154.160.0/20", "91.108.4.0/22")
LINKEDIN_V4 = ("108.174.0.0/20",)
GCP_V4 = ("35.184.0.0/13",)


def _nets(prefixes: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(p) for p in prefixes]


@dataclass
class AddressBook:
    """Hands out unique addresses from the worlds above and remembers which kind got each."""

    rng: np.random.Generator

    def __post_init__(self) -> None:
        self.addresses: list[str] = []
        self.kinds: list[str] = []
        self.order: list[tuple[int, int]] = []  # (version, value): sorts like the addresses
        self._used: set[int] = set()
        self._residential = _nets(RESIDENTIAL_V4)
        self._residential_v6 = _nets(RESIDENTIAL_V6)
        self._nat = _nets(NAT_V4)
        self._cloud = _nets([p for p, _ in CLOUD_V4])
        self._cloud_v6 = _nets([p for p, _ in CLOUD_V6])
        self._googlebot = _nets(GOOGLEBOT_V4)
        self._googlebot_v6 = _nets(GOOGLEBOT_V6)
        self._bingbot = _nets(BINGBOT_V4)
        self._facebook = _nets(FACEBOOK_V4)
        self._facebook_v6 = _nets(FACEBOOK_V6)
        self._twitter = _nets(TWITTER_V4)
        self._telegram = _nets(TELEGRAM_V4)
        self._linkedin = _nets(LINKEDIN_V4)
        self._gcp = _nets(GCP_V4)
        self.uptimerobot = self._uptimerobot_list()

    def _uptimerobot_list(self) -> list[str]:
        """The monitor operator's published probe addresses (a few dozen single hosts)."""
        v4 = self._draw(_nets(UPTIMEROBOT_HOSTS_V4), 36, reserve=False)
        v6 = self._draw(_nets(UPTIMEROBOT_HOSTS_V6), 12, reserve=False, v6_host_bits=8)
        return [str(ipaddress.ip_address(v)) for v in sorted(set(v4)) + sorted(set(v6))]

    def _draw(self, nets: Sequence[Network], n: int, *, reserve: bool = True,
              v6_host_bits: int = 64) -> list[int]:
        """``n`` distinct unused addresses (as integers) from ``nets``."""
        # weight blocks by the log of their size so small blocks still get used: spreads
        # clients over many /16s instead of filling one /8
        weights = np.array([max(1, net.max_prefixlen - net.prefixlen) for net in nets], float)
        out: list[int] = []
        taken = set(self._used)
        while len(out) < n:
            want = n - len(out)
            which = self.rng.choice(len(nets), size=want, p=weights / weights.sum())
            for net_i, r1, r2 in zip(which.tolist(), self.rng.random(want).tolist(),
                                     self.rng.random(want).tolist(), strict=True):
                net = nets[net_i]
                base = int(net.network_address)
                if net.version == 4:
                    size = net.num_addresses
                    value = base + 1 + int(r1 * (size - 2)) if size > 2 else base
                    if size >= 256 and (value & 0xFF) in (0, 255):
                        continue
                else:
                    subnet_bits = max(0, 64 - net.prefixlen)
                    host_bits = min(v6_host_bits, 62)
                    value = (base + (int(r1 * 2**subnet_bits) << 64)
                             + 1 + int(r2 * (2**host_bits - 1)))
                if value in taken:
                    continue
                taken.add(value)
                out.append(value)
        if reserve:
            self._used.update(out)
        return out

    def take(self, world: str, kind: str, n: int, v6_share: float = 0.0) -> np.ndarray:
        """Allocate ``n`` fresh addresses for ``kind``; returns their indices."""
        v4_nets, v6_nets, v6_bits = {
            "residential": (self._residential, self._residential_v6, 64),
            "nat": (self._nat, self._residential_v6, 64),
            "cloud": (self._cloud, self._cloud_v6, 64),
            "googlebot": (self._googlebot, self._googlebot_v6, 16),
            "bingbot": (self._bingbot, self._bingbot, 8),
            "facebook": (self._facebook, self._facebook_v6, 16),
            "twitter": (self._twitter, self._twitter, 8),
            "telegram": (self._telegram, self._telegram, 8),
            "linkedin": (self._linkedin, self._linkedin, 8),
            "gcp": (self._gcp, self._gcp, 8),
        }[world]
        n_v6 = int((self.rng.random(n) < v6_share).sum()) if v6_share else 0
        values = self._draw(v4_nets, n - n_v6) + self._draw(v6_nets, n_v6, v6_host_bits=v6_bits)
        # interleave so that v6 clients are not all the last ones of a kind
        shuffled = [values[i] for i in self.rng.permutation(n).tolist()]
        return self._append(shuffled, kind)

    def _append(self, values: list[int], kind: str) -> np.ndarray:
        start = len(self.addresses)
        for v in values:
            version = 4 if v < 1 << 32 else 6
            self.addresses.append(_format(v))
            self.order.append((version, v))
        self.kinds.extend([kind] * len(values))
        return np.arange(start, len(self.addresses), dtype=np.int32)

    def take_listed(self, kind: str, n: int) -> np.ndarray:
        """Allocate ``n`` of the published uptime-monitor addresses (the list grows if needed)."""
        free = [int(ipaddress.ip_address(a)) for a in self.uptimerobot]
        free = [v for v in free if v not in self._used]
        chosen = [free[i] for i in self.rng.permutation(len(free)).tolist()][:n]
        extra = self._draw(_nets(UPTIMEROBOT_HOSTS_V4), n - len(chosen))
        self.uptimerobot.extend(_format(v) for v in extra)
        self._used.update(chosen)
        return self._append(chosen + extra, kind)


def _format(value: int) -> str:
    if value < 1 << 32:  # the common case, ~5x faster than ipaddress
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


def _sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def write_ranges(ranges_dir: Path, uptimerobot: Sequence[str], published: datetime) -> None:
    """Write the four operator files in their publishers' formats (byte-stable).

    Meta publishes no range file for its link-preview fetcher (its docs point at the AS32934
    routes in whois), so none is written: facebookexternalhit stays unverified, as it is for
    a default botguard setup.
    """
    ranges_dir.mkdir(parents=True, exist_ok=True)
    stamp = published.strftime("%Y-%m-%dT%H:%M:%S.000000")
    google = {
        "creationTime": stamp,
        "prefixes": [{"ipv6Prefix": p} for p in GOOGLEBOT_V6]
        + [{"ipv4Prefix": p} for p in GOOGLEBOT_V4],
    }
    bing = {"creationTime": stamp, "prefixes": [{"ipv4Prefix": p} for p in BINGBOT_V4]}
    created = published - timedelta(hours=9, minutes=13)
    aws = {
        "syncToken": str(int(created.timestamp())),
        "createDate": created.strftime("%Y-%m-%d-%H-%M-%S"),
        "prefixes": [
            {"ip_prefix": p, "region": r, "service": service, "network_border_group": r}
            for p, r in CLOUD_V4
            for service in ("AMAZON", "EC2")
        ],
        "ipv6_prefixes": [
            {"ipv6_prefix": p, "region": r, "service": service, "network_border_group": r}
            for p, r in CLOUD_V6
            for service in ("AMAZON", "EC2")
        ],
    }
    files = {
        "googlebot.json": json.dumps(google, indent=4) + "\n",
        "bingbot.json": json.dumps(bing, indent=2) + "\n",
        "ip-ranges.json": json.dumps(aws, indent=2) + "\n",
        "uptimerobot.ips": "".join(f"{a}\n" for a in sorted(uptimerobot, key=_sort_key)),
    }
    for name, text in files.items():
        tmp = ranges_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8", newline="\n")
        tmp.replace(ranges_dir / name)
