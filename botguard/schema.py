"""Declared schemas for every boundary of the pipeline.

One place so that a stage can be tested alone against the frame it promises, and so that
analysts know which columns (with units in their names) they can rely on.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

#: The normalized hits frame: every parser produces exactly these columns.
#: Optional fields are always present and null when the log format lacks them.
HITS_SCHEMA: dict[str, pl.DataType] = {
    "ts": UTC_TS,
    "client_ip": pl.String(),  # validated and normalized (IPv6 compressed); null when the log has none
    "method": pl.String(),
    "path": pl.String(),
    "query": pl.String(),
    "protocol": pl.String(),
    "status": pl.Int16(),
    "bytes": pl.Int64(),
    "referer": pl.String(),
    "user_agent": pl.String(),
    "host": pl.String(),
    "request_time_s": pl.Float64(),
    "x_forwarded_for": pl.String(),
    "peer_ip": pl.String(),  # the connecting address when client_ip came from X-Forwarded-For
    "session_id": pl.String(),
    "tls_fingerprint": pl.String(),
    "source": pl.String(),
    "line_no": pl.Int64(),
}

#: Lines that did not parse, verbatim, with where they came from and why.
REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line_no": pl.Int64(),
    "reason": pl.String(),
    "line": pl.String(),
}

#: One row per distinct user agent (``features.agent.agent_features``).
AGENT_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "user_agent": pl.String(),
    "ua_family": pl.String(),
    "ua_major": pl.Int32(),
    "ua_os": pl.String(),
    "ua_device": pl.String(),  # desktop | mobile | tablet | bot | other
    "ua_is_bot_parser": pl.Boolean(),
    "known_crawler": pl.Boolean(),
    "crawler_name": pl.String(),
    "crawler_tags": pl.List(pl.String()),
    "is_ai_crawler": pl.Boolean(),
    "is_search_engine": pl.Boolean(),
    "is_seo_crawler": pl.Boolean(),
    "is_monitor": pl.Boolean(),
    "is_service": pl.Boolean(),
    "is_library": pl.Boolean(),
    "is_app": pl.Boolean(),
    "is_scanner": pl.Boolean(),
    "is_headless": pl.Boolean(),
    "is_empty": pl.Boolean(),
    "is_malformed": pl.Boolean(),
    "is_browser_like": pl.Boolean(),
    "ua_version_lag": pl.Int32(),
    "ua_stale": pl.Boolean(),
}

#: Columns of a client's most frequent agent copied onto the client row.
TOP_AGENT_COLS = [
    "ua_family", "ua_major", "ua_os", "ua_device", "ua_version_lag", "known_crawler",
    "crawler_name", "crawler_tags", "is_ai_crawler", "is_search_engine", "is_seo_crawler",
    "is_monitor",
]

#: One row per distinct client address (``features.network.network_features``).
NETWORK_SCHEMA: dict[str, pl.DataType] = {
    "ip": pl.String(),
    "ip_version": pl.Int8(),
    "prefix": pl.String(),  # /24 or /64 (network.prefix_v4 / prefix_v6)
    "asn": pl.Int64(),
    "as_org": pl.String(),
    "country": pl.String(),  # ISO 3166-1 alpha-2
    "is_datacenter": pl.Boolean(),  # null when nothing loaded could tell
    "datacenter_source": pl.String(),  # a range source name, 'cidr' or 'asn'
    "cdn": pl.String(),  # the CDN whose published edge ranges hold the address (ranges of kind cdn)
}

ACTIONS = ("block", "challenge", "monitor", "allow")

#: One row per client: what botguard decided and why.
DECISIONS_SCHEMA: dict[str, pl.DataType] = {
    "client": pl.String(),
    "ip": pl.String(),
    "action": pl.String(),
    "score": pl.Float64(),
    "reasons": pl.List(pl.String()),
    "kind": pl.String(),  # human | verified_crawler | good_bot | scraper | probe | ... (top evidence)
    "requests": pl.Int64(),
    "sessions": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "user_agent": pl.String(),
    "verified_crawler": pl.String(),
    "campaign": pl.String(),
}

#: What a blocklist sink receives: validated addresses or networks, one row each.
BLOCK_ENTRIES_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.String(),  # an IPv4/IPv6 address or CIDR, already validated
    "action": pl.String(),
    "score": pl.Float64(),
    "reasons": pl.List(pl.String()),
    "clients": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "expires": UTC_TS,
}


def empty(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def conform(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast to ``schema``, adding missing columns as nulls (order as declared)."""
    exprs = []
    for name, dtype in schema.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


def check(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> list[str]:
    """Differences between ``df`` and ``schema`` (empty list = conforms). Used by tests."""
    problems = []
    for name, dtype in schema.items():
        if name not in df.columns:
            problems.append(f"missing column {name}")
        elif df.schema[name] != dtype:
            problems.append(f"{name}: expected {dtype}, got {df.schema[name]}")
    extra = set(df.columns) - set(schema)
    if extra:
        problems.append(f"unexpected columns {sorted(extra)}")
    return problems


# Filled in below (generated from a real run, then kept by hand): per-session and per-client
# feature frames. Analysts load these into notebooks; rules may use any client column.
SESSION_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "client": pl.String(),
    "session_no": pl.Int64(),
    "requests": pl.Int64(),
    "bytes_sent": pl.Int64(),
    "pages": pl.Int64(),
    "assets": pl.Int64(),
    "background_hits": pl.Int64(),
    "product_pages": pl.Int64(),
    "api_hits": pl.Int64(),
    "listing_pages": pl.Int64(),
    "paginated_hits": pl.Int64(),
    "sort_filter_hits": pl.Int64(),
    "cart_hits": pl.Int64(),
    "checkout_hits": pl.Int64(),
    "login_hits": pl.Int64(),
    "login_posts": pl.Int64(),
    "robots_hits": pl.Int64(),
    "sitemap_hits": pl.Int64(),
    "probe_hits": pl.Int64(),
    "attack_hits": pl.Int64(),
    "head_requests": pl.Int64(),
    "post_requests": pl.Int64(),
    "bad_requests": pl.Int64(),
    "no_referer_hits": pl.Int64(),
    "no_referer_pages": pl.Int64(),
    "status_4xx": pl.Int64(),
    "status_404": pl.Int64(),
    "status_429": pl.Int64(),
    "status_5xx": pl.Int64(),
    "night_hits": pl.Int64(),
    "seq_steps": pl.Int64(),
    "seq_pairs": pl.Int64(),
    "gap_n": pl.Int64(),
    "gap_sum_s": pl.Float64(),
    "gap_sumsq_s2": pl.Float64(),
    "start_ts": UTC_TS,
    "end_ts": UTC_TS,
    "ip": pl.String(),
    "peak_10s": pl.Int64(),
    "peak_60s": pl.Int64(),
    "duration_s": pl.Float64(),
    "req_per_min": pl.Float64(),
    "pages_per_min": pl.Float64(),
    "product_pages_per_min": pl.Float64(),
    "peak_pages_per_10s": pl.Int64(),
    "peak_pages_per_min": pl.Int64(),
    "gap_mean_s": pl.Float64(),
    "gap_cv": pl.Float64(),
    "burstiness": pl.Float64(),
    "assets_per_page": pl.Float64(),
    "asset_share": pl.Float64(),
    "product_share": pl.Float64(),
    "api_share": pl.Float64(),
    "listing_share": pl.Float64(),
    "paginated_share": pl.Float64(),
    "sort_filter_share": pl.Float64(),
    "head_share": pl.Float64(),
    "post_share": pl.Float64(),
    "no_referer_share": pl.Float64(),
    "no_referer_page_share": pl.Float64(),
    "error_4xx_share": pl.Float64(),
    "error_404_share": pl.Float64(),
    "error_429_share": pl.Float64(),
    "error_5xx_share": pl.Float64(),
    "night_share": pl.Float64(),
    "probe_share": pl.Float64(),
    "attack_share": pl.Float64(),
    "bad_request_share": pl.Float64(),
    "seq_walk_share": pl.Float64(),
    "api_without_product": pl.Boolean(),
}

CLIENT_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "client": pl.String(),
    "sessions": pl.Int64(),
    "requests": pl.Int64(),
    "bytes_sent": pl.Int64(),
    "pages": pl.Int64(),
    "assets": pl.Int64(),
    "background_hits": pl.Int64(),
    "product_pages": pl.Int64(),
    "api_hits": pl.Int64(),
    "listing_pages": pl.Int64(),
    "paginated_hits": pl.Int64(),
    "sort_filter_hits": pl.Int64(),
    "cart_hits": pl.Int64(),
    "checkout_hits": pl.Int64(),
    "login_hits": pl.Int64(),
    "login_posts": pl.Int64(),
    "robots_hits": pl.Int64(),
    "sitemap_hits": pl.Int64(),
    "probe_hits": pl.Int64(),
    "attack_hits": pl.Int64(),
    "head_requests": pl.Int64(),
    "post_requests": pl.Int64(),
    "bad_requests": pl.Int64(),
    "no_referer_hits": pl.Int64(),
    "no_referer_pages": pl.Int64(),
    "status_4xx": pl.Int64(),
    "status_404": pl.Int64(),
    "status_429": pl.Int64(),
    "status_5xx": pl.Int64(),
    "night_hits": pl.Int64(),
    "seq_steps": pl.Int64(),
    "seq_pairs": pl.Int64(),
    "gap_n": pl.Int64(),
    "gap_sum_s": pl.Float64(),
    "gap_sumsq_s2": pl.Float64(),
    "peak_10s": pl.Int64(),
    "peak_60s": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "active_s": pl.Float64(),
    "longest_session_s": pl.Float64(),
    "ip": pl.String(),
    "distinct_products": pl.Float64(),
    "distinct_paths": pl.Float64(),
    "distinct_agents": pl.Float64(),
    "gap_median_s": pl.Float64(),
    "user_agent": pl.String(),
    "clients_per_agent": pl.Float64(),
    "span_s": pl.Float64(),
    "req_per_min": pl.Float64(),
    "pages_per_min": pl.Float64(),
    "product_pages_per_min": pl.Float64(),
    "peak_pages_per_10s": pl.Int64(),
    "peak_pages_per_min": pl.Int64(),
    "gap_mean_s": pl.Float64(),
    "gap_cv": pl.Float64(),
    "burstiness": pl.Float64(),
    "assets_per_page": pl.Float64(),
    "asset_share": pl.Float64(),
    "product_share": pl.Float64(),
    "api_share": pl.Float64(),
    "listing_share": pl.Float64(),
    "paginated_share": pl.Float64(),
    "sort_filter_share": pl.Float64(),
    "head_share": pl.Float64(),
    "post_share": pl.Float64(),
    "no_referer_share": pl.Float64(),
    "no_referer_page_share": pl.Float64(),
    "error_4xx_share": pl.Float64(),
    "error_404_share": pl.Float64(),
    "error_429_share": pl.Float64(),
    "error_5xx_share": pl.Float64(),
    "night_share": pl.Float64(),
    "probe_share": pl.Float64(),
    "attack_share": pl.Float64(),
    "bad_request_share": pl.Float64(),
    "seq_walk_share": pl.Float64(),
    "api_without_product": pl.Boolean(),
    "catalogue_coverage": pl.Float64(),
    "product_revisit_share": pl.Float64(),
    "library_ua_share": pl.Float64(),
    "app_ua_share": pl.Float64(),
    "scanner_ua_share": pl.Float64(),
    "headless_ua_share": pl.Float64(),
    "browser_ua_share": pl.Float64(),
    "crawler_ua_share": pl.Float64(),
    "empty_ua_share": pl.Float64(),
    "malformed_ua_share": pl.Float64(),
    "stale_ua_share": pl.Float64(),
    "service_ua_share": pl.Float64(),
    "crawler_claim_share": pl.Float64(),
    # The client's most frequent agent of each kind, quoted by the reasons.
    "library_agent": pl.String(),
    "scanner_agent": pl.String(),
    "headless_agent": pl.String(),
    "malformed_agent": pl.String(),
    **{c: AGENT_FEATURES_SCHEMA[c] for c in TOP_AGENT_COLS},
    "claimed_crawler": pl.String(),
    **{c: t for c, t in NETWORK_SCHEMA.items() if c != "ip"},
    "clients_in_prefix": pl.Int64(),
    "crawler_status": pl.String(),
    "verified_crawler": pl.String(),
    "fake_crawler": pl.Boolean(),
    "crawler_ranges_after_traffic": pl.Boolean(),
    # The site's log holds static assets (most browsers reading several pages fetched some):
    # false behind a CDN that serves them, where an asset-less visitor is no evidence.
    "assets_logged": pl.Boolean(),
}

CLIENT_FEATURE_COLUMNS: set[str] = set(CLIENT_FEATURES_SCHEMA)
