"""Features: sessionized hits → one row per session and one per client, with units in names.

``build_features`` streams batches through flags → sessionizer → mergeable aggregates, then
enriches the (small) client frame once per distinct value: agent fingerprints per distinct
user agent, network and crawler verification per distinct address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from botguard.agent_process import AgentProcess
from botguard.config.models import Config
from botguard.features.aggregate import FeatureAccumulator
from botguard.features.hitflags import Flagger
from botguard.features.product_shapes import describe as describe_inference
from botguard.frames import add_columns
from botguard.schema import TOP_AGENT_COLS
from botguard.sessionize import Sessionizer

if TYPE_CHECKING:
    from botguard.features.carry import Carry

#: Agent flags whose most frequent matching agent a client's reasons quote (its top agent
#: may be another: a person's browser beside one Wget download).
AGENT_EXAMPLES = {
    "is_library": "library_agent",
    "is_scanner": "scanner_agent",
    "is_headless": "headless_agent",
    "is_malformed": "malformed_agent",
}

#: Agent columns summarised per client as a share of the client's requests.
AGENT_SHARES = {
    "is_library": "library_ua_share",
    "is_app": "app_ua_share",
    "is_scanner": "scanner_ua_share",
    "is_headless": "headless_ua_share",
    "is_browser_like": "browser_ua_share",
    "known_crawler": "crawler_ua_share",
    "is_empty": "empty_ua_share",
    "is_malformed": "malformed_ua_share",
    "ua_stale": "stale_ua_share",
    "is_service": "service_ua_share",
}


@dataclass
class FeatureResult:
    sessions: pl.DataFrame
    n_sessions: int
    clients: pl.DataFrame
    agents: pl.DataFrame
    samples: pl.DataFrame
    timeline: pl.DataFrame
    warnings: list[str] = field(default_factory=list)
    late_hits: int = 0
    product_regs: Any = None  # sketches.Registers of products per client (campaign overlap)
    parse_stats: Any = None
    #: What was inferred from the log's URL shapes (``product_shapes``) and added to the
    #: catalogue config, by key (product_patterns, product_query_params).
    inferred_products: dict[str, list[str]] = field(default_factory=dict)


def build_features(
    batches: Iterable[pl.DataFrame],
    cfg: Config,
    *,
    ranges: Any = None,
    resolver: Any = None,
    on_batch: Any = None,
    keep_sessions: bool = True,
    agent_process: AgentProcess | None = None,
    carry: Carry | None = None,
    seal: Callable[[Carry], None] | None = None,
    clock_limit: datetime | None = None,
    flagger: Flagger | None = None,
) -> FeatureResult:
    """Features of a stream of hits batches. Without ``keep_sessions`` the session rows are
    folded into the client rows as the stream goes (``sessions`` comes back empty and memory
    stays flat in the length of the log); ``n_sessions`` counts them either way. Pass an
    ``agent_process`` started before the stream to build the agent table in it.

    With a ``carry`` (incremental analysis) the stream continues an earlier run's state:
    ``seal(carry)`` is called when the stream ends, to store it before this run's results
    fold everything up; the results then cover the carry's previous window too. Hits dated
    after ``clock_limit`` do not move its windows.

    Batches that come flagged were flagged by ``flagger`` (its inferred product patterns are
    reported and carried); others are flagged here, by it or by one made for this stream."""
    if flagger is None:
        flagger = Flagger(cfg, inferred=carry.inferred_products if carry is not None else None)
    if carry is not None:
        sess, acc = carry.sessionizer, carry.current
        limit = clock_limit or datetime.max.replace(tzinfo=UTC)
    else:
        sess, acc = Sessionizer(cfg), FeatureAccumulator(cfg, keep_sessions=keep_sessions)
    if agent_process is None:
        agent_process = AgentProcess(start=False)
    early: _EarlyAgents | None = None
    for hits in batches:
        # Callers may flag the hits themselves, e.g. in the thread that parses them.
        flagged = hits if "_ck" in hits.columns else flagger(hits)
        if carry is None and early is None and "user_agent" in flagged.columns:
            early = _EarlyAgents(flagged["user_agent"].unique(), agent_process, cfg)
        if carry is not None:
            carry.add(sess.push(flagged), limit)  # may close the window: a new accumulator
        else:
            acc.add(sess.push(flagged))
        if on_batch:
            on_batch(hits)
    if carry is not None:
        carry.inferred_products = flagger.inferred
        if seal is not None:
            seal(carry)
        acc = carry.current
    tail = sess.flush()
    if len(tail):
        acc.add(tail)
        if carry is not None:
            carry.touch(tail)
    if carry is not None:
        agent_job: Callable[[], pl.DataFrame] | None = carry.agent_table(agent_process)
        judged = carry.judge()
        ua_counts, sessions, n_sessions, clients = judged.ua_counts, pl.DataFrame(), judged.n_sessions, judged.clients
        samples, timeline, product_regs = judged.samples, judged.timeline, judged.product_regs
    else:
        acc.finish_parts()
        # Agent parsing is Python, one call per distinct agent; the session and client frames
        # are Polars: the two run side by side (in a thread, or in the caller's process).
        ua_counts = acc.ua_counts
        if ua_counts is None:
            agent_job = None
        elif early is not None:
            agent_job = early.rest(ua_counts["user_agent"].unique())
        else:
            agent_job = agent_process.submit(ua_counts["user_agent"].unique(), cfg)
        sessions = acc.sessions()
        n_sessions = acc.total_sessions()
        clients = acc.clients()
        samples, timeline, product_regs = acc.samples(), acc.timeline, acc.sketches.get("products")
    agents = agent_job() if agent_job is not None else pl.DataFrame()
    warnings: list[str] = []
    if flagger.inference is not None and flagger.inference.shapes:
        warnings.append(describe_inference(flagger.inference))
    if len(clients):
        clients = _join_agents(clients, ua_counts, agents)
        clients = _enrich_network(clients, cfg, ranges, resolver, warnings)
        clients = clients.with_columns(pl.lit(assets_logged(clients)).alias("assets_logged"))
    if len(clients):
        keyless = int(clients.filter((pl.col("client") == "-") | pl.col("client").str.starts_with("- | "))["requests"].sum())
        if keyless:
            total = int(clients["requests"].sum())
            warnings.append(
                f"{keyless:,} of {total:,} hits ({keyless / total:.0%}) have no {_key_name(cfg)}: they are "
                "counted under the client '-'" + (" (one per agent)" if cfg.session.key == "ip+user_agent" else "")
                + ". Check that the format captures the client address, or set "
                "session.key (e.g. field:session_id for a session cookie)"
            )
        warnings.extend(w for w in (_proxy_hint(clients), _cdn_hint(clients, cfg), _agentless_hint(ua_counts),
                                    _assetless_hint(clients)) if w)
    if sess.late_hits:
        warnings.append(
            f"{sess.late_hits} lines arrived later than session.out_of_order_tolerance "
            f"({cfg.session.out_of_order_tolerance:g}s); they were counted at their own time"
        )
    return FeatureResult(
        sessions=sessions,
        n_sessions=n_sessions,
        clients=clients,
        agents=agents,
        samples=samples,
        timeline=_timeline(timeline, clients),
        warnings=warnings,
        late_hits=sess.late_hits,
        product_regs=product_regs,
        inferred_products=dict(flagger.inferred or {}),
    )


class _EarlyAgents:
    """The agent table, begun on the first batch's agents as soon as that batch arrives.

    Most of a log's distinct agents are in its first batch, and a log of one batch (most logs
    a user tries first) otherwise had its agents parsed only after the stream, while the
    main thread waited (0.3-0.5 s of a 1.3 s run on the 10,000-line elastic log, its 559
    agents). Begun early, the parse runs beside sessionizing and the client rows; at the end
    only the agents the later batches brought are parsed. A table is one row per agent, each
    row the agent's alone, so the two parts together are the table of all of them."""

    def __init__(self, first: pl.Series, process: AgentProcess, cfg: Config) -> None:
        self.first, self.process, self.cfg = first, process, cfg
        self.job = process.submit(first, cfg)

    def rest(self, every: pl.Series) -> Callable[[], pl.DataFrame]:
        new = every.filter(~every.is_in(self.first.implode(), nulls_equal=True))
        if new.is_empty():
            return self.job
        later = self.process.submit(new, self.cfg)
        return lambda: pl.concat([self.job(), later()], how="vertical_relaxed")


def assets_logged(clients: pl.DataFrame) -> bool:
    """Whether the log holds static assets: most browsers that read several pages fetched
    some. Behind a CDN the origin's log has none, and an asset-less visitor is no evidence.
    With no such browsers there is nobody whom missing assets could wrong: true."""
    if "assets_logged" in clients.columns and len(clients):
        return bool(clients["assets_logged"][0])
    readers = clients.filter((pl.col("browser_ua_share") >= 0.9) & (pl.col("pages") >= 3))
    return readers.is_empty() or float((readers["assets"] > 0).mean() or 0.0) >= 0.3  # type: ignore[arg-type]


def _key_name(cfg: Config) -> str:
    key = cfg.session.key
    if key.startswith("field:"):
        return key.split(":", 1)[1]
    return "client address"


def _timeline(timeline: pl.DataFrame | None, clients: pl.DataFrame) -> pl.DataFrame:
    """Requests per hour and client, with the client's name put back on the hashed key."""
    from botguard.features.sketches import key_hash

    if timeline is None or clients.is_empty():
        return pl.DataFrame()
    names = clients.select(key_hash(pl.col("client")).alias("_ck"), "client")
    return timeline.join(names, on="_ck", how="inner").select("bucket", "client", "requests")


def agent_table(distinct_agents: pl.Series, cfg: Config) -> pl.DataFrame:
    """One row per distinct agent: parsed fingerprint, crawler claim, library verdict."""
    from botguard.features.agent import agent_features
    from botguard.features.crawlers import claimed_crawler

    agents = agent_features(distinct_agents, cfg)
    # A malformed agent (e.g. a truncated crawler string) is not a claim we can check; it is
    # evidence of its own (the malformed_agent rule).
    agents = agents.with_columns(claimed_crawler(agents["user_agent"], cfg).alias("claimed_crawler")).with_columns(
        pl.when(pl.col("is_malformed").fill_null(False)).then(None).otherwise(pl.col("claimed_crawler")).alias("claimed_crawler")
    )
    # A named service bot built on an HTTP library (LinkedInBot says "Apache-HttpClient") is
    # the service, not anonymous library traffic.
    return agents.with_columns(
        (pl.col("is_library") & ~(pl.col("known_crawler") & ~pl.col("crawler_tags").list.contains("library")))
        .alias("is_library")
    )


def _join_agents(clients: pl.DataFrame, ua_counts: pl.DataFrame | None, agents: pl.DataFrame) -> pl.DataFrame:
    """Per-client shares of agent kinds (weighted by requests) and the top agent's columns."""
    assert ua_counts is not None
    weighted = ua_counts.join(agents, on="user_agent", how="left", nulls_equal=True)
    shares = weighted.group_by("client").agg(
        *[
            (pl.col("n") * pl.col(flag).fill_null(False).cast(pl.Int64)).sum().truediv(pl.col("n").sum()).alias(name)
            for flag, name in AGENT_SHARES.items()
        ],
        (pl.col("n") * pl.col("claimed_crawler").is_not_null().cast(pl.Int64)).sum().truediv(pl.col("n").sum()).alias("crawler_claim_share"),
    )
    # The agent that makes a claim or carries a flag: the one with the most requests, ties to the
    # earliest seen, then the agent's hash (the rows' order otherwise depends on how the batches
    # folded). Only the rows that have one are sorted. A claim made by any of the client's
    # agents is checked, not only the most frequent one: rotating clients slip a crawler agent
    # in among browser ones.
    flagged = weighted.filter(
        pl.any_horizontal(pl.col("claimed_crawler").is_not_null(), *[pl.col(f).fill_null(False) for f in AGENT_EXAMPLES])
    ).sort(["n", "first_ts", "_uk"], descending=[True, False, False], nulls_last=True)
    picks = flagged.group_by("client").agg(
        pl.col("claimed_crawler").drop_nulls().first(),
        *[pl.col("user_agent").filter(pl.col(flag).fill_null(False)).first().alias(name) for flag, name in AGENT_EXAMPLES.items()],
    )
    shares = add_columns(shares, picks, "client")
    top = agents.select("user_agent", *[c for c in TOP_AGENT_COLS if c in agents.columns])
    return add_columns(add_columns(clients, shares, "client"), top, "user_agent", nulls_equal=True)


def _proxy_hint(clients: pl.DataFrame) -> str | None:
    """One private address sending most of the traffic is a load balancer or reverse proxy:
    every visitor is then one client, and the run's verdicts mean nothing."""
    from botguard.iputil import NON_PUBLIC_NETWORKS, in_networks

    total = int(clients["requests"].sum())
    if total < 100:
        return None
    top = clients[int(clients["requests"].arg_max() or 0)]
    if int(top["requests"][0]) * 2 < total or top["ip"][0] is None:
        return None
    if not in_networks(top["ip"], NON_PUBLIC_NETWORKS).fill_null(False)[0]:
        return None
    return (
        f"{top['ip'][0]} sent {int(top['requests'][0]) / total:.0%} of all requests from a private address: "
        "it looks like a load balancer or proxy in front of the site. List it in ingest.trusted_proxies "
        "(and log X-Forwarded-For) so each visitor's own address is used"
    )


def behind_cdn(clients: pl.DataFrame, share: float) -> dict[str, float]:
    """CDNs whose edge addresses sent at least ``share`` of the requests, with their shares:
    the site is behind them and the log names the edge, not the visitor."""
    if "cdn" not in clients.columns or clients.is_empty():
        return {}
    total = int(clients["requests"].sum())
    by_cdn = clients.filter(pl.col("cdn").is_not_null()).group_by("cdn").agg(pl.col("requests").sum())
    return {c: n / total for c, n in sorted(by_cdn.iter_rows()) if total and n >= share * total}


def _cdn_hint(clients: pl.DataFrame, cfg: Config) -> str | None:
    behind = behind_cdn(clients, cfg.policy.cdn_share)
    if not behind:
        return None
    names = ", ".join(f"{c} ({s:.0%} of requests)" for c, s in behind.items())
    return (
        f"the log names CDN edge addresses, not visitors: {names}. Their clients are not blocked (each "
        f"carries many visitors). Log the visitor's address ($http_x_forwarded_for, or the CDN's own header "
        f"such as $http_cf_connecting_ip, in a log_format) and trust the CDN's edges: ingest.trusted_proxies: "
        f"[{', '.join(behind)}]"
    )


def _assetless_hint(clients: pl.DataFrame) -> str | None:
    if bool(clients["assets_logged"][0]):
        return None
    return (
        "the log holds almost no static assets (a CDN serves them?): a visitor without assets is no "
        "evidence here, and many agents on one address count as rotation only with a new agent every few "
        "requests or no referers (the shoppers behind a carrier NAT look asset-less too)"
    )


def _agentless_hint(ua_counts: pl.DataFrame | None) -> str | None:
    """Most hits without an agent: the agent checks have nothing to read."""
    if ua_counts is None:
        return None
    total = int(ua_counts["n"].sum())
    agentless = int(ua_counts.filter(pl.col("user_agent").is_null())["n"].sum())
    if not total or agentless * 10 < total * 9:
        return None
    return (
        f"{agentless / total:.0%} of hits have no user agent (a format such as 'common' does not log it): "
        "crawler claims, HTTP libraries, headless browsers and agent rotation cannot be seen; "
        "log $http_user_agent (the 'combined' format) for them"
    )


def _enrich_network(clients: pl.DataFrame, cfg: Config, ranges: Any, resolver: Any, warnings: list[str]) -> pl.DataFrame:
    from botguard.features.crawlers import (
        missing_ranges_hint,
        ranges_after_traffic,
        verify_addresses,
        verify_claims,
    )
    from botguard.features.network import network_features
    from botguard.ranges import RangeSet, load_ranges

    if ranges is None:
        ranges = load_ranges(cfg)
    assert isinstance(ranges, RangeSet)
    ips = clients["ip"].drop_nulls().unique()
    net = network_features(ips, cfg, ranges, warnings=warnings)
    out = add_columns(clients, net, "ip")
    # Neighbours: distinct clients sharing the /24 (IPv4) or /64 (IPv6).
    out = out.with_columns(
        pl.when(pl.col("prefix").is_not_null())
        .then(pl.col("client").n_unique().over("prefix"))
        .otherwise(1)
        .cast(pl.Int64)
        .alias("clients_in_prefix")
    )
    claims = out.select("ip", "claimed_crawler").filter(pl.col("claimed_crawler").is_not_null() & pl.col("ip").is_not_null()).unique()
    if len(claims):
        verified = verify_claims(claims, cfg, ranges, resolver)
        out = add_columns(
            out, verified.select("ip", "claimed_crawler", "crawler_status", "verified_crawler"),
            ["ip", "claimed_crawler"],
        )
        hint = missing_ranges_hint(cfg, ranges)
        if hint:
            warnings.append(hint)
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("crawler_status"), pl.lit(None, pl.String).alias("verified_crawler"))
    out = verify_addresses(out.with_columns(
        pl.when(pl.col("claimed_crawler").is_not_null() & pl.col("crawler_status").is_null())
        .then(pl.lit("unverified")).otherwise(pl.col("crawler_status")).alias("crawler_status"),
    ), cfg, ranges)
    return out.with_columns(
        (pl.col("crawler_status") == "fake").fill_null(False).alias("fake_crawler"),
        ranges_after_traffic(out, cfg, ranges).alias("crawler_ranges_after_traffic"),
    )
