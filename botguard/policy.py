"""Scores → actions, with the guard rails that keep a blocklist safe to load.

Order matters and is deliberate: campaigns lift their members' scores first; thresholds give
an action; then the caps only ever lower it (allowlists, verified crawlers, shared addresses,
too little evidence). Network aggregation and the blast-radius cap work on the result.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from botguard.config.models import Config
from botguard.features import assets_logged, behind_cdn, sketches
from botguard.frames import add_columns


@dataclass
class PolicyResult:
    decisions: pl.DataFrame
    entries: pl.DataFrame
    campaigns: list[dict[str, object]] = field(default_factory=list)
    refused: str | None = None
    notes: list[str] = field(default_factory=list)


def find_campaigns(
    clients: pl.DataFrame, product_regs: pl.DataFrame | sketches.Registers | sketches.RegisterUnion | None, cfg: Config
) -> pl.DataFrame:
    """Groups of low-volume, asset-less, referer-less addresses sharing one agent string and
    splitting the catalogue between them. Returns client, campaign, campaign_size, overlap."""
    cc = cfg.policy.campaigns
    empty = pl.DataFrame(schema={"client": pl.String, "campaign": pl.String, "campaign_size": pl.Int64, "campaign_overlap": pl.Float64})
    if not cc.enabled or clients.is_empty() or product_regs is None or product_regs.is_empty():
        return empty
    cand = clients.filter(
        (pl.col("requests") <= cc.max_requests_per_member)
        & (pl.col("asset_share") <= cc.max_asset_share)
        & (pl.col("no_referer_page_share") >= 0.8)
        & (pl.col("product_pages") >= 2)
        & pl.col("user_agent").is_not_null()
        & (pl.col("crawler_status").fill_null("") != "verified")
        # A declared bot says what it is: Slackbot or WhatsApp fetching previews from many
        # addresses is not a swarm hiding among shoppers.
        & ~pl.col("known_crawler").fill_null(False)
        & (pl.col("crawler_ua_share").fill_null(0.0) < 0.5)
        # An app's users share its agent and never fetch assets or send referers: the
        # evidence a campaign is made of says nothing about them.
        & (pl.col("app_ua_share").fill_null(0.0) < 0.5)
    ).select("client", "user_agent", "distinct_products")
    n_members = pl.col("client").list.len()
    groups = cand.group_by("user_agent").agg(pl.col("client"), pl.col("distinct_products").sum().alias("_sum"))
    if not assets_logged(clients):
        # Every visitor is asset-less here, and a few of the many shoppers on a popular browser
        # arrive without referers too. The candidates are a swarm when their agent is mostly
        # theirs, or when that agent has far more of them among its product readers than is
        # usual: usual is the rate over the agents too few candidates to form a group (a swarm
        # spread over several agents must not set its own bar).
        readers = clients.filter(pl.col("user_agent").is_not_null() & (pl.col("product_pages") >= 2))
        per_agent = readers.group_by("user_agent").agg(pl.len().alias("_users")).join(
            groups.select("user_agent", n_members.alias("_cand")), on="user_agent", how="left"
        ).with_columns(pl.col("_cand").fill_null(0))
        usual = per_agent.filter(pl.col("_cand") < cc.min_members)
        usual_users = int(usual["_users"].sum())
        # Smoothed with one pseudo-candidate; no usual rate without enough readers to say.
        rate = (int(usual["_cand"].sum()) + 1) / (usual_users + 1) if usual_users >= 50 else float("inf")
        groups = groups.join(per_agent.select("user_agent", "_users"), on="user_agent", how="left").filter(
            (n_members >= cc.min_agent_share * pl.col("_users"))
            | (n_members >= cc.min_rate_lift * rate * pl.col("_users"))
        ).drop("_users")
    groups = groups.filter(n_members >= cc.min_members)
    if groups.is_empty():
        return empty
    p = cfg.sketches.precision
    ordered = sorted(groups.iter_rows(), key=lambda r: (-len(r[1]), r[0]))
    # One join for all groups: the union of each group's product sketches.
    members = pl.DataFrame(
        {"_g": [i for i, (_, m, _) in enumerate(ordered) for _ in m],
         "client": [c for _, m, _ in ordered for c in m]},
        schema={"_g": pl.UInt64, "client": pl.String},
    ).with_columns(sketches.key_hash(pl.col("client")).alias("_ck"))
    if not isinstance(product_regs, pl.DataFrame):
        product_regs = product_regs.rows(members["_ck"])
    union_regs = (
        product_regs.join(members.select("_ck", "_g"), on="_ck", how="inner")
        .group_by("_g", "reg").agg(pl.col("rank").max())
    )
    unions = dict(sketches.estimate(union_regs, ["_g"], p).iter_rows()) if len(union_regs) else {}
    rows = []
    for i, (_agent, group, total) in enumerate(ordered):
        union = float(unions.get(i, 0.0))
        overlap = max(0.0, 1 - union / total) if total else 1.0
        if overlap <= cc.max_overlap:
            cid = f"C{i + 1}"
            for m in group:
                rows.append((m, cid, len(group), round(overlap, 3)))
    if not rows:
        return empty
    return pl.DataFrame(rows, schema=empty.schema, orient="row")


def decide(
    clients: pl.DataFrame,
    scored: pl.DataFrame,
    cfg: Config,
    *,
    product_regs: pl.DataFrame | sketches.Registers | sketches.RegisterUnion | None = None,
    force: bool = False,
) -> PolicyResult:
    pol = cfg.policy
    th = pol.thresholds
    camp = find_campaigns(clients, product_regs, cfg)
    # Set beside the wide client frame, not joined to it (a join copies every column); the
    # scores come in the clients' order (``scoring.score``), checked.
    if scored["client"].equals(clients["client"]):
        df = clients.hstack(scored.drop("client"))
    else:
        df = add_columns(clients, scored, "client")
    if camp.is_empty():
        df = df.hstack(camp.drop("client").clear(len(df)))
    else:
        df = add_columns(df, camp, "client")
        # Campaign members are decided as a group: the campaign is the evidence.
        camp_reason = pl.format(
            "member of campaign {}: {} addresses, same agent, no assets, disjoint catalogue slices (overlap {})",
            pl.col("campaign"), pl.col("campaign_size"), pl.col("campaign_overlap"),
        )
        df = df.with_columns(
            pl.when(pl.col("campaign").is_not_null()).then(pl.max_horizontal(pl.col("score"), pl.lit(0.9))).otherwise(pl.col("score")).alias("score"),
            pl.when(pl.col("campaign").is_not_null())
            .then(pl.concat_list(camp_reason, pl.col("reasons")))
            .otherwise(pl.col("reasons")).alias("reasons"),
            pl.when(pl.col("campaign").is_not_null()).then(pl.lit("campaign")).otherwise(pl.col("kind")).alias("kind"),
        )
    action = (
        pl.when(pl.col("score") >= th.block).then(pl.lit("block"))
        .when(pl.col("score") >= th.challenge).then(pl.lit("challenge"))
        .when(pl.col("score") >= th.monitor).then(pl.lit("monitor"))
        .otherwise(pl.lit("allow"))
    )
    df = df.with_columns(action.alias("action"))

    allow_reason = _allowlist_reason(df, cfg)
    verified = pl.col("crawler_status") == "verified"
    sa = pol.shared_address
    shared = (
        (pl.col("distinct_agents") >= sa.min_agents)
        & (pl.col("sessions") >= sa.min_sessions)
        # Assets, or (outside hosting networks, where rotating bots live) referer-rich browsing.
        & (
            (pl.col("asset_share") >= sa.min_asset_share)
            | ((pl.col("no_referer_page_share") <= sa.max_no_referer_page_share) & ~pl.col("is_datacenter").fill_null(False))
        )
        & (pl.col("browser_ua_share") >= 0.5)
    ).fill_null(False)
    # Few requests are little evidence, unless they are probes: three asks for /.env and
    # /.git/config are a scanner whatever else it did.
    thin = (
        (pl.col("requests") < pol.min_requests_to_block) & pl.col("campaign").is_null() & (pl.col("score") < 0.95)
        & (pl.col("probe_hits") + pl.col("attack_hits") < 3)
    )
    # A crawler claim nobody could check (its ranges are not loaded) may be the real crawler.
    checkable = [spec.name for spec in cfg.crawlers.verify]
    unchecked = (pl.col("crawler_status") == "unverified") & pl.col("claimed_crawler").is_in(checkable)
    private = _private_mask(df, cfg)
    edge = pl.col("cdn").is_in(list(behind_cdn(df, pol.cdn_share))).fill_null(False) if "cdn" in df.columns else pl.lit(False)
    # A declared monitor, health check or webhook that stays on a few paths.
    service = (
        (pl.col("service_ua_share") >= 0.9) & (pl.col("distinct_paths") <= 5)
        & (pl.col("probe_hits") == 0) & (pl.col("attack_hits") == 0)
    ).fill_null(False)
    blocked = pl.col("action") == "block"
    flagged = pl.col("action").is_in(["block", "challenge"])
    caps: list[tuple[pl.Expr, str, pl.Expr]] = [
        (flagged & pl.lit(private), "monitor", pl.lit("not blocked: private or reserved address (load balancer, health check, internal service?)")),
        (flagged & edge, "monitor", pl.format(
            "not blocked: {} edge address, carrying the requests of many visitors (set ingest.trusted_proxies)", pl.col("cdn"))),
        (flagged & service, "monitor", pl.format(
            "not blocked: declared monitoring/health-check/webhook agent, {} requests on {} page paths (allowlist it: policy.allowlist.agents)",
            pl.col("requests"), pl.col("distinct_paths").cast(pl.Int64))),
        (blocked & unchecked.fill_null(False), "challenge", pl.format(
            "capped at challenge: claims to be {} and no ranges of it are loaded (`botguard ranges list`)", pl.col("claimed_crawler"))),
        (blocked & shared, "challenge", pl.format(
            "capped at challenge: shared address ({} agents, {} sessions, browser-like)", pl.col("distinct_agents").cast(pl.Int64), pl.col("sessions"))),
        (blocked & thin, "challenge", pl.format(
            "capped at challenge: only {} request{}", pl.col("requests"),
            pl.when(pl.col("requests") == 1).then(pl.lit("")).otherwise(pl.lit("s")),
        )),
    ]
    ai = _declared_ai_crawler(df, cfg)
    ai_reason = pl.format(
        "declared AI crawler ({}) that reads robots.txt: policy.ai_crawlers is {} (robots.txt keeps it out)",
        pl.col("crawler_name"), pl.lit(pol.ai_crawlers),
    )
    action = (
        pl.when(allow_reason.is_not_null()).then(pl.lit("allow"))
        .when(ai).then(pl.lit(pol.ai_crawlers))
        .when(verified.fill_null(False)).then(pl.lit("allow"))
    )
    # The reason an exemption puts first, or a cap adds last (one of them at most): built as
    # one string column and added in one list operation, not a list built per branch (each
    # branch of a when/then is computed for every client).
    first = (
        pl.when(allow_reason.is_not_null()).then(allow_reason)
        .when(ai).then(ai_reason)
        .when(verified.fill_null(False)).then(pl.format("verified crawler {} (published ranges)", pl.col("verified_crawler")))
    )
    exempt = allow_reason.is_not_null() | ai | verified.fill_null(False)
    last: Any = pl.when(exempt).then(pl.lit(None, pl.String))  # Then, then ChainedThen
    for cond, capped, why in caps:
        action = action.when(cond).then(pl.lit(capped))
        last = last.when(cond).then(why)
    none = pl.lit([], dtype=pl.List(pl.String))
    df = df.with_columns(first.alias("_first"), last.otherwise(None).alias("_last")).with_columns(
        action.otherwise(pl.col("action")).alias("action"),
        pl.concat_list(
            pl.when(pl.col("_first").is_not_null()).then(pl.concat_list(pl.col("_first"))).otherwise(none),
            pl.col("reasons"),
            pl.when(pl.col("_last").is_not_null()).then(pl.concat_list(pl.col("_last"))).otherwise(none),
        ).alias("reasons"),
        pl.when(ai).then(pl.lit("ai_crawler"))
        .when(verified.fill_null(False)).then(pl.lit("verified_crawler"))
        .when(pl.col("kind").is_null()).then(pl.lit("human"))
        .otherwise(pl.col("kind")).alias("kind"),
    ).drop("_first", "_last")
    decisions = df.select(
        "client", "ip", "action", pl.col("score").fill_null(0.0), "reasons", "kind", "requests", "sessions",
        pl.col("first_seen"), pl.col("last_seen"), "user_agent", "verified_crawler", "campaign",
    ).sort(["score", "requests", "client"], descending=[True, True, False])

    entries, notes = _entries(decisions, clients, cfg)
    refused = None if force else _blast_radius(decisions, clients, cfg)
    campaigns: list[dict[str, object]] = []
    if len(camp):
        # One pass over the members, not a filter of every client per campaign.
        members = df.filter(pl.col("campaign").is_not_null())
        per_campaign = members.group_by("campaign").agg(
            pl.len().alias("members"), pl.col("campaign_overlap").first().alias("overlap"),
            pl.col("requests").sum(), pl.col("user_agent").first(),
        ).sort(pl.col("campaign").cast(pl.String))
        campaigns = [
            {"id": r["campaign"], "members": int(r["members"]), "overlap": float(r["overlap"]),
             "requests": int(r["requests"]), "user_agent": r["user_agent"]}
            for r in per_campaign.iter_rows(named=True)
        ]
    return PolicyResult(decisions, entries, campaigns, refused, notes)


def _declared_ai_crawler(df: pl.DataFrame, cfg: Config) -> pl.Expr:
    """Clients ``policy.ai_crawlers`` decides: a declared AI crawler agent that behaves as one
    (reads robots.txt, or its address is in the operator's ranges), never probes, and does not
    fail a range check. A scraper that borrows the name without reading robots.txt is scored."""
    if cfg.policy.ai_crawlers == "score" or "is_ai_crawler" not in df.columns:
        return pl.lit(False)
    status = pl.col("crawler_status").fill_null("")
    return (
        pl.col("is_ai_crawler").fill_null(False)
        & (pl.col("crawler_ua_share").fill_null(0.0) >= 0.5)
        & (status != "fake")
        & ((pl.col("robots_hits") > 0) | (status == "verified"))
        & (pl.col("probe_hits") == 0) & (pl.col("attack_hits") == 0)
    ).fill_null(False)


def _private_mask(df: pl.DataFrame, cfg: Config) -> pl.Series:
    """Clients whose address is private, loopback, link-local or reserved and must not be
    blocked under ``policy.private_addresses``. In ``auto`` they may be blocked only when most
    clients have such addresses: then the log is internal (or simulated), not public traffic
    in which they would be the shop's own load balancer or health check."""
    from botguard.iputil import NON_PUBLIC_NETWORKS, in_networks

    mode = cfg.policy.private_addresses
    none = pl.Series("private", [False] * len(df), dtype=pl.Boolean)
    if mode == "block" or df.is_empty():
        return none
    mask = in_networks(df["ip"], NON_PUBLIC_NETWORKS).fill_null(False)
    if mode == "auto" and 2 * int(mask.sum()) >= len(df):
        return none
    return mask


def _allowlist_reason(df: pl.DataFrame, cfg: Config) -> pl.Expr:
    al = cfg.policy.allowlist
    conds: list[tuple[pl.Expr, str]] = []
    if al.networks:
        from botguard.iputil import in_networks

        hit = in_networks(df["ip"], list(al.networks))
        conds.append((pl.lit(hit), "allowlisted network"))
    if al.asns and "asn" in df.columns:
        conds.append((pl.col("asn").is_in(list(al.asns)), "allowlisted ASN"))
    for pat in al.agents:
        conds.append((pl.col("user_agent").str.contains(pat), "allowlisted agent"))
    expr = pl.lit(None, pl.String)
    for cond, text in reversed(conds):
        expr = pl.when(cond.fill_null(False)).then(pl.lit(text)).otherwise(expr)
    return expr


def _entries(decisions: pl.DataFrame, clients: pl.DataFrame, cfg: Config) -> tuple[pl.DataFrame, list[str]]:
    """Blocked clients → validated addresses; whole /24 or /64 when every client in it is blocked."""
    notes: list[str] = []
    blocked = decisions.filter((pl.col("action") == "block") & pl.col("ip").is_not_null())
    if cfg.session.key not in ("ip", "ipv6_64"):
        # With a client key finer than the address (ip+agent, session), an address is listed
        # only if nothing else seen on it is allowed through. (Keyed by address, a client is
        # its address: there is nothing to check.)
        per_ip = decisions.filter(pl.col("ip").is_not_null()).group_by("ip").agg((pl.col("action") == "block").all().alias("_all"))
        shared = blocked["ip"].is_in(per_ip.filter(~pl.col("_all"))["ip"].implode())
        if shared.any():
            notes.append(f"{int(shared.sum())} blocked clients share an address with allowed clients: not listed")
        blocked = blocked.filter(~shared)
    else:
        # An IPv6 client is its whole /64 (session.ipv6_prefix, a subscriber's prefix): list the
        # network, not the one address of it that came first.
        blocked = blocked.with_columns(
            pl.when(pl.col("client").str.contains("/", literal=True)).then(pl.col("client")).otherwise(pl.col("ip")).alias("ip")
        )
    rows = blocked.group_by("ip").agg(
        pl.col("score").max(), pl.col("reasons").first(), pl.len().cast(pl.Int64).alias("clients"),
        pl.col("first_seen").min(), pl.col("last_seen").max(),
    )
    rows = rows.with_columns(_valid_entries(rows["ip"]).alias("entry")).filter(pl.col("entry").is_not_null())
    agg = cfg.policy.aggregate
    if agg.enabled and len(rows):
        pfx = clients.select("ip", "prefix").filter(pl.col("ip").is_not_null()).unique()
        status = decisions.select("ip", "action").join(pfx, on="ip", how="left").group_by("prefix").agg(
            (pl.col("action") == "block").all().alias("_all"), pl.col("ip").n_unique().alias("_n")
        )
        full = status.filter(pl.col("_all") & (pl.col("_n") >= agg.min_clients) & pl.col("prefix").is_not_null())
        if len(full):
            rows = rows.join(pfx, left_on="entry", right_on="ip", how="left")
            collapsed = rows.filter(pl.col("prefix").is_in(full["prefix"].implode())).group_by("prefix").agg(
                pl.col("score").max(), pl.col("reasons").first(), pl.col("clients").sum(),
                pl.col("first_seen").min(), pl.col("last_seen").max(),
            ).with_columns(
                pl.col("prefix").alias("entry"),
                pl.concat_list(pl.format("whole network: all {} clients in it blocked", pl.col("clients")), pl.col("reasons")).alias("reasons"),
            )
            rows = pl.concat([
                rows.filter(~pl.col("prefix").is_in(full["prefix"].implode()) | pl.col("prefix").is_null()).drop("prefix"),
                collapsed.drop("prefix"),
            ], how="diagonal_relaxed")
    entries = rows.select(
        "entry", pl.lit("block").alias("action"), "score", "reasons", "clients", "first_seen", "last_seen",
        pl.lit(None, pl.Datetime("us", "UTC")).alias("expires"),
    )
    return entries.sort("entry"), notes


def _valid_entries(ips: pl.Series) -> pl.Series:
    """Each value as a canonical address or network, or null. Canonical dotted IPv4 (what the
    parser writes) is recognised by a strict pattern; anything else goes through ``ipaddress``."""
    from botguard.parsers.normalize import normalize_ip_column

    return normalize_ip_column(ips, slow=_valid_ip)


def _valid_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        return None


def _blast_radius(decisions: pl.DataFrame, clients: pl.DataFrame, cfg: Config) -> str | None:
    pol = cfg.policy
    n = len(decisions)
    if n == 0:
        return None
    blocked = decisions.filter(pl.col("action") == "block")
    share = len(blocked) / n
    if share > pol.max_block_share_clients and n >= 20:
        return (f"the blocklist would cover {share:.0%} of clients ({len(blocked)} of {n}), above "
                f"policy.max_block_share_clients ({pol.max_block_share_clients:.0%})")
    humanish = clients.filter((pl.col("browser_ua_share") >= 0.9) & (pl.col("assets_per_page") >= 0.5))
    total = int(humanish["requests"].sum()) if len(humanish) else 0
    if total:
        hit = int(humanish.filter(pl.col("client").is_in(blocked["client"].implode()))["requests"].sum())
        if hit / total > pol.max_block_share_human_requests:
            return (f"the blocklist would block {hit / total:.1%} of human-looking requests, above "
                    f"policy.max_block_share_human_requests ({pol.max_block_share_human_requests:.0%})")
    return None
