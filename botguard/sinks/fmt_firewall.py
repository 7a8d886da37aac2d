"""Host firewall inputs: ``ipset restore``, ``nft -f`` and ``iptables-restore``.

Every file is written to be reloaded by cron: loading it again replaces the previous list
instead of appending to it, and loading it never touches rules botguard does not own.
"""

from __future__ import annotations

import polars as pl

from botguard.sinks.fmt_base import ExportFormat, ExportView, comment_block

IPSET_V4 = "botguard_v4"
IPSET_V6 = "botguard_v6"
# Fixed, generous create options: ``create -exist`` fails when an existing set was created with
# different options, so they must not depend on how many entries this run has.
_IPSET_MAXELEM = 1 << 20
NFT_TABLE = "botguard"
CHAIN = "BOTGUARD"


def _by_family(view: ExportView, family: int, column: str = "entry") -> list[str]:
    return view.entries.filter(pl.col("family") == family)[column].to_list()


def render_ipset(view: ExportView) -> bytes:
    """``ipset restore`` input: one hash:net set per family, flushed, then filled."""
    maxelem = max(_IPSET_MAXELEM, view.entries.height)
    out = [comment_block(view.header)]
    out.append(f"create {IPSET_V4} hash:net family inet hashsize 4096 maxelem {maxelem} -exist\n")
    out.append(f"create {IPSET_V6} hash:net family inet6 hashsize 4096 maxelem {maxelem} -exist\n")
    out.append(f"flush {IPSET_V4}\nflush {IPSET_V6}\n")
    out.extend(f"add {IPSET_V4} {e}\n" for e in _by_family(view, 4))
    out.extend(f"add {IPSET_V6} {e}\n" for e in _by_family(view, 6))
    return "".join(out).encode("ascii")


def _nft_set(name: str, kind: str, elements: list[str]) -> str:
    head = f"\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n"
    if not elements:
        # "elements = { }" is a syntax error; an empty set is simply one without the clause.
        return head + "\t}\n"
    body = "".join(f"\t\t\t{e},\n" for e in elements)
    return head + "\t\telements = {\n" + body + "\t\t}\n\t}\n"


def render_nftables(view: ExportView) -> bytes:
    """An ``inet botguard`` table: two interval sets and an input chain dropping their members.

    nftables sets can only be used by rules of their own table, so the table carries its own
    chain. The leading ``table``/``delete table`` pair makes ``nft -f`` replace the table in
    one transaction (the first line creates it if absent so the delete cannot fail).
    """
    t = NFT_TABLE
    parts = [
        comment_block(view.header),
        f"table inet {t}\ndelete table inet {t}\n",
        f"table inet {t} {{\n",
        _nft_set("blocklist_v4", "ipv4_addr", _by_family(view, 4)),
        _nft_set("blocklist_v6", "ipv6_addr", _by_family(view, 6)),
        "\tchain input {\n",
        "\t\ttype filter hook input priority -10; policy accept;\n",
        "\t\tip saddr @blocklist_v4 drop\n",
        "\t\tip6 saddr @blocklist_v6 drop\n",
        "\t}\n}\n",
    ]
    return "".join(parts).encode("ascii")


def _render_xtables(view: ExportView, family: int) -> bytes:
    rules = "".join(f"-A {CHAIN} -s {e} -j DROP\n" for e in _by_family(view, family, "cidr"))
    text = f"{comment_block(view.header)}*filter\n:{CHAIN} - [0:0]\n{rules}COMMIT\n"
    return text.encode("ascii")


def render_iptables(view: ExportView) -> bytes:
    """``iptables-restore --noflush`` input: a BOTGUARD chain in the filter table (IPv4)."""
    return _render_xtables(view, 4)


def render_ip6tables(view: ExportView) -> bytes:
    """The IPv6 counterpart of :func:`render_iptables`, for ``ip6tables-restore``."""
    return _render_xtables(view, 6)


_XT_NOTE = (
    "one linear rule per entry: for large lists prefer the ipset or nftables formats",
    "declaring the chain flushes it, so reloading replaces the previous list",
)

FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "ipset",
        render_ipset,
        "ipset restore input, hash:net sets botguard_v4 and botguard_v6",
        ".ipset",
        notes=(
            "load: ipset restore < THIS_FILE",
            "use: iptables -I INPUT -m set --match-set botguard_v4 src -j DROP",
            "use: ip6tables -I INPUT -m set --match-set botguard_v6 src -j DROP",
        ),
    ),
    ExportFormat(
        "nftables",
        render_nftables,
        "nftables table inet botguard with interval sets and a drop chain",
        ".nft",
        notes=("load: nft -f THIS_FILE (replaces the botguard table atomically)",),
    ),
    ExportFormat(
        "iptables",
        render_iptables,
        "iptables-restore input, chain BOTGUARD, filter table",
        ".rules",
        families=frozenset({4}),
        notes=(
            "IPv4 only: IPv6 entries are not in this file, use the ip6tables format for them",
            "load: iptables-restore --noflush < THIS_FILE (without --noflush it flushes all chains)",
            "hook once: iptables -I INPUT -j BOTGUARD",
            *_XT_NOTE,
        ),
    ),
    ExportFormat(
        "ip6tables",
        render_ip6tables,
        "ip6tables-restore input, chain BOTGUARD, filter table",
        ".rules",
        families=frozenset({6}),
        notes=(
            "IPv6 only: IPv4 entries are in the iptables format",
            "load: ip6tables-restore --noflush < THIS_FILE (without --noflush it flushes all chains)",
            "hook once: ip6tables -I INPUT -j BOTGUARD",
            *_XT_NOTE,
        ),
    ),
)
