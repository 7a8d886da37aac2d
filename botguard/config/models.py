"""Typed, frozen configuration. Every default lives in ``botguard/data/default.yaml``.

Models have no defaults of their own on purpose: the commented YAML is the one place an analyst
reads and tunes, and a key missing from it is a bug the tests catch.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from botguard.config.types import ASN, ByteSize, Duration, Network, Proxy, Regex


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- ingest
FormatType = Literal[
    "combined", "common", "vcombined", "nginx", "json", "alb", "cloudfront", "cloudflare", "caddy", "w3c", "haproxy"
]


#: Hits columns a JSON field map may fill; ``request`` takes a whole request line
#: ("GET /p?q=1 HTTP/1.1", as nginx's ``$request`` under ``escape=json``).
JSON_FIELD_KEYS = (
    "ts", "client_ip", "method", "path", "query", "request", "protocol", "host", "status", "bytes",
    "referer", "user_agent", "request_time_s", "x_forwarded_for", "session_id", "tls_fingerprint",
)


class FormatSpec(Strict):
    """A named log format: a built-in type, or an nginx ``log_format`` string, or a JSON map."""

    type: FormatType
    log_format: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs(self) -> FormatSpec:
        if self.type == "nginx" and not self.log_format:
            raise ValueError("type 'nginx' needs log_format: an nginx log_format string")
        if self.type == "json" and not self.fields:
            raise ValueError("type 'json' needs fields: a map of hits column -> JSON key")
        unknown = sorted(set(self.fields) - set(JSON_FIELD_KEYS))
        if self.type == "json" and unknown:
            raise ValueError(f"fields: unknown column {', '.join(map(repr, unknown))}; allowed: {', '.join(JSON_FIELD_KEYS)}")
        return self


class IngestConfig(Strict):
    format: str
    formats: dict[str, FormatSpec]
    max_error_ratio: float = Field(ge=0, le=1)
    batch_bytes: ByteSize
    sniff_lines: int = Field(ge=1)
    default_timezone: str
    trusted_proxies: list[Proxy]  # addresses, CIDRs, or range source names (cloudflare)
    forwarded_field: Literal["x_forwarded_for"]


# --------------------------------------------------------------------------- sessions
class SessionConfig(Strict):
    key: str
    ipv6_prefix: int = Field(ge=32, le=128)
    gap: Duration
    out_of_order_tolerance: Duration

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if v in ("ip", "ip+user_agent", "ipv6_64") or re.fullmatch(r"field:[a-z_]+", v):
            return v
        raise ValueError(
            f"expected one of 'ip', 'ip+user_agent', 'ipv6_64', 'field:<hits column>', got {v!r}"
        )


class SiteConfig(Strict):
    timezone: str
    night_hours: tuple[int, int]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"expected an IANA time zone like 'Europe/Paris', got {v!r}") from None
        return v


# --------------------------------------------------------------------------- features
class ProductInferenceConfig(Strict):
    """When the product patterns find (almost) no product pages, the log's own URL shapes."""

    enabled: bool
    min_page_views: int = Field(ge=1)
    min_products: int = Field(ge=2)
    min_view_share: float = Field(gt=0, le=1)
    max_patterns: int = Field(ge=1)


class CatalogueConfig(Strict):
    product_patterns: list[Regex]
    infer_products: ProductInferenceConfig
    non_product_patterns: list[Regex] = Field(default_factory=list)
    background_patterns: list[Regex] = Field(default_factory=list)
    api_patterns: list[Regex]
    listing_patterns: list[Regex]
    product_query_params: list[str]
    pagination_params: list[str]
    sort_filter_params: list[str]
    asset_extensions: list[str]
    asset_prefixes: list[str]
    asset_patterns: list[Regex] = Field(default_factory=list)
    cart_patterns: list[Regex]
    checkout_patterns: list[Regex]
    login_patterns: list[Regex]
    robots_paths: list[str]
    sitemap_patterns: list[Regex]
    probe_patterns: list[Regex]
    attack_patterns: list[Regex]


class AgentConfig(Strict):
    library_patterns: list[Regex]
    tool_patterns: list[Regex]
    headless_patterns: list[Regex]
    extra_crawler_patterns: list[Regex]
    service_patterns: list[Regex] = Field(default_factory=list)
    app_patterns: list[Regex] = Field(default_factory=list)
    ai_crawler_patterns: list[Regex] = Field(default_factory=list)


class NetworkConfig(Strict):
    asn_db: str | None
    country_db: str | None
    city_db: str | None
    datacenter_asns: list[ASN]
    datacenter_cidrs: list[Network]
    prefix_v4: int = Field(ge=8, le=32)
    prefix_v6: int = Field(ge=16, le=128)


class CrawlerSpec(Strict):
    name: str
    ua_pattern: Regex
    ranges: list[str]
    rdns_suffixes: list[str]


class RdnsConfig(Strict):
    enabled: bool
    timeout: Duration
    max_lookups: int = Field(ge=0)


class CrawlersConfig(Strict):
    verify: list[CrawlerSpec]
    rdns: RdnsConfig


class RangeSource(Strict):
    name: str
    url: str | list[str]  # several: fetched and merged (Cloudflare's IPv4 and IPv6 lists)
    files: list[str]
    kind: Literal["crawler", "cloud", "datacenter", "cdn"]

    @property
    def urls(self) -> list[str]:
        return [u for u in ([self.url] if isinstance(self.url, str) else self.url) if u]


class RangesConfig(Strict):
    data_dir: str
    sources: list[RangeSource]


class SketchConfig(Strict):
    precision: int = Field(ge=4, le=16)


# --------------------------------------------------------------------------- detection
class RuleSpec(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: str
    weight: float = Field(ge=-1, le=1)
    kind: str
    reason: str
    enabled: bool = True
    #: Rules that read the same behaviour (two measures of pace, of missing assets …) share a
    #: group: a client matching several of them counts, and is told, the strongest only.
    group: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")


class ModelConfig(Strict):
    enabled: bool
    path: str | None
    weight: float = Field(ge=0, le=1)
    min_score: float = Field(ge=0, lt=1)
    min_requests: int = Field(ge=1)
    anomaly_weight: float = Field(ge=0, le=1)


class ThresholdsConfig(Strict):
    block: float = Field(ge=0, le=1)
    challenge: float = Field(ge=0, le=1)
    monitor: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsConfig:
        if not self.block >= self.challenge >= self.monitor:
            raise ValueError("expected block >= challenge >= monitor")
        return self


class AllowlistConfig(Strict):
    networks: list[Network]
    asns: list[ASN]
    agents: list[Regex]


class SharedAddressConfig(Strict):
    min_agents: int = Field(ge=2)
    min_sessions: int = Field(ge=1)
    min_asset_share: float = Field(ge=0, le=1)
    max_no_referer_page_share: float = Field(default=0.5, ge=0, le=1)


class CampaignConfig(Strict):
    enabled: bool
    min_members: int = Field(ge=2)
    max_requests_per_member: int = Field(ge=1)
    max_asset_share: float = Field(ge=0, le=1)
    max_overlap: float = Field(ge=0, le=1)
    min_agent_share: float = Field(ge=0, le=1)
    min_rate_lift: float = Field(gt=1)


class AggregateConfig(Strict):
    enabled: bool
    min_clients: int = Field(ge=2)


class PolicyConfig(Strict):
    thresholds: ThresholdsConfig
    allowlist: AllowlistConfig
    shared_address: SharedAddressConfig
    campaigns: CampaignConfig
    aggregate: AggregateConfig
    max_block_share_clients: float = Field(ge=0, le=1)
    max_block_share_human_requests: float = Field(ge=0, le=1)
    min_requests_to_block: int = Field(ge=1)
    private_addresses: Literal["auto", "block", "never"] = "auto"
    cdn_share: float = Field(default=0.2, gt=0, le=1)
    ai_crawlers: Literal["score", "allow", "monitor", "challenge", "block"] = "monitor"


class StateConfig(Strict):
    ttl: Duration
    max_ttl: Duration
    repeat_factor: float = Field(ge=1)
    window: Duration = 86400.0


class Config(Strict):
    ingest: IngestConfig
    session: SessionConfig
    site: SiteConfig
    catalogue: CatalogueConfig
    agent: AgentConfig
    network: NetworkConfig
    crawlers: CrawlersConfig
    ranges: RangesConfig
    sketches: SketchConfig
    rules: list[RuleSpec]
    model: ModelConfig
    policy: PolicyConfig
    state: StateConfig
