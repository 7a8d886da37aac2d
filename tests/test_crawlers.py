"""Crawler claims and their verification by published ranges or forward-confirmed rDNS."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from botguard.config import Config, load_config
from botguard.features.crawlers import (
    RdnsVerifier,
    claimed_crawler,
    missing_ranges_hint,
    ranges_after_traffic,
    verify_addresses,
    verify_claims,
)
from botguard.ranges import RangeSet, load_ranges, update_ranges

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
DUCK = "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


def _rdns(
    cfg: Config, enabled: bool = True, timeout: float = 2.0, max_lookups: int = 200
) -> Config:
    rdns = cfg.crawlers.rdns.model_copy(
        update={"enabled": enabled, "timeout": timeout, "max_lookups": max_lookups}
    )
    return cfg.model_copy(update={"crawlers": cfg.crawlers.model_copy(update={"rdns": rdns})})


@pytest.fixture
def fixture_ranges(cfg: Config, fixtures_dir: Path, tmp_path: Path) -> RangeSet:
    update_ranges(cfg, from_dir=fixtures_dir / "ranges", data_dir=tmp_path)
    return load_ranges(cfg, tmp_path)


def _frame(pairs: list[tuple[str | None, str | None]], cfg: Config) -> pl.DataFrame:
    ips, agents = zip(*pairs, strict=True)
    frame = pl.DataFrame({"ip": list(ips), "user_agent": list(agents)},
                         schema={"ip": pl.String, "user_agent": pl.String})
    return frame.with_columns(claimed_crawler=claimed_crawler(frame["user_agent"], cfg))


# --------------------------------------------------------------------------- claims
def test_claimed_crawler(cfg: Config) -> None:
    agents = pl.Series("ua", [GOOGLEBOT, BINGBOT, FIREFOX, None, "Googlebot-Image/1.0",
                              "AdsBot-Google (+http://www.google.com/adsbot.html)", "GPTBot/1.2",
                              "Applebot/0.1", GOOGLEBOT])
    out = claimed_crawler(agents, cfg)
    assert out.name == "claimed_crawler" and out.dtype == pl.String
    assert out.to_list() == ["Googlebot", "Bingbot", None, None, "Googlebot", "Googlebot",
                             "GPTBot", "Applebot", "Googlebot"]


def test_claimed_crawler_first_entry_wins_and_python_only_patterns(cfg: Config) -> None:
    """Claims are scanned in Rust; an entry whose pattern only Python's ``re`` compiles (a
    look-behind) still matches, and an agent matching several entries takes the first, as
    ``re.search`` over the entries in order would."""
    specs = [
        cfg.crawlers.verify[0].model_copy(update={"name": "NotFromTest", "ua_pattern": r"(?<!test-)examplebot"}),
        cfg.crawlers.verify[0].model_copy(update={"name": "AnyExample", "ua_pattern": r"(?i)example"}),
        *cfg.crawlers.verify,
    ]
    custom = cfg.model_copy(update={"crawlers": cfg.crawlers.model_copy(update={"verify": specs})})
    agents = pl.Series(["examplebot/1.0", "test-examplebot/1.0", "ExampleBot", GOOGLEBOT, FIREFOX, None])
    out = claimed_crawler(agents, custom).to_list()
    expected = [
        next((s.name for s in specs if a is not None and re.search(s.ua_pattern, a)), None) for a in agents
    ]
    assert out == expected == ["NotFromTest", "AnyExample", "AnyExample", "Googlebot", None, None]


# --------------------------------------------------------------------------- by ranges
def test_ranges_decide_verified_and_fake(cfg: Config, fixture_ranges: RangeSet) -> None:
    frame = _frame([
        ("192.0.2.1", GOOGLEBOT),       # in fixture googlebot ranges
        ("203.0.113.5", GOOGLEBOT),     # AWS: a scraper wearing Googlebot's agent
        ("2001:db8:4801:10::7", GOOGLEBOT),
        ("198.51.100.1", BINGBOT),
        ("192.0.2.1", BINGBOT),         # Google's address, Bing's name: fake
        ("10.0.0.1", FIREFOX),
        (None, GOOGLEBOT),
        ("203.0.113.5", GOOGLEBOT),
    ], cfg)
    out = verify_claims(frame, cfg, fixture_ranges)
    assert out.columns == ["ip", "user_agent", "claimed_crawler", "crawler_status",
                           "verified_crawler"]
    assert out["ip"].to_list() == frame["ip"].to_list()  # row order kept
    assert out["crawler_status"].to_list() == [
        "verified", "fake", "verified", "verified", "fake", None, "unverified", "fake",
    ]
    assert out["verified_crawler"].to_list() == [
        "Googlebot", None, "Googlebot", "Bingbot", None, None, None, None,
    ]


def test_an_address_in_a_crawlers_ranges_is_that_crawler_without_a_claim(cfg: Config, fixture_ranges: RangeSet) -> None:
    """Logs without agents (common format) or a fetcher with a browser agent: the address
    alone says Googlebot. Claims keep the status their check gave."""
    frame = verify_claims(_frame([
        ("192.0.2.1", None), ("192.0.2.1", FIREFOX), ("198.51.100.1", None), ("10.0.0.1", None),
        ("203.0.113.5", GOOGLEBOT), (None, None),
    ], cfg), cfg, fixture_ranges)
    out = verify_addresses(frame, cfg, fixture_ranges)
    assert out.columns == frame.columns and out["ip"].to_list() == frame["ip"].to_list()
    assert out["crawler_status"].to_list() == ["verified", "verified", "verified", None, "fake", None]
    assert out["verified_crawler"].to_list() == ["Googlebot", "Googlebot", "Bingbot", None, None, None]
    assert verify_addresses(frame, cfg, RangeSet({})).equals(frame)


def test_ranges_fetched_long_after_the_traffic_are_flagged(cfg: Config) -> None:
    from datetime import UTC, datetime

    ranges = RangeSet({"googlebot": ["192.0.2.0/24"]}, fetched_at={"googlebot": datetime(2026, 1, 1, tzinfo=UTC)})
    frame = pl.DataFrame({
        "claimed_crawler": ["Googlebot", "Googlebot", "Bingbot", None],
        "last_seen": [datetime(2015, 5, 17, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC),
                      datetime(2015, 5, 17, tzinfo=UTC), datetime(2015, 5, 17, tzinfo=UTC)],
    })
    # Bing's lists are not loaded: nothing to say about them.
    assert ranges_after_traffic(frame, cfg, ranges).to_list() == [True, False, False, False]
    assert ranges_after_traffic(frame, cfg, RangeSet({"googlebot": ["192.0.2.0/24"]})).to_list() == [False] * 4


def test_no_ranges_and_no_rdns_leaves_claims_unverified(cfg: Config) -> None:
    frame = _frame([("192.0.2.1", GOOGLEBOT), ("203.0.113.5", BINGBOT), ("10.0.0.1", FIREFOX)],
                   cfg)
    out = verify_claims(frame, cfg, RangeSet({}))
    assert out["crawler_status"].to_list() == ["unverified", "unverified", None]
    assert out["verified_crawler"].null_count() == 3


def test_claim_the_config_does_not_know_is_unverified(cfg: Config) -> None:
    frame = pl.DataFrame({"ip": ["192.0.2.1"], "claimed_crawler": ["SomeBot"]})
    assert verify_claims(frame, cfg, RangeSet({}))["crawler_status"].to_list() == ["unverified"]


def test_empty_frame(cfg: Config) -> None:
    frame = pl.DataFrame(schema={"ip": pl.String, "claimed_crawler": pl.String})
    out = verify_claims(frame, cfg, RangeSet({}))
    assert out.height == 0 and out.columns[-2:] == ["crawler_status", "verified_crawler"]


def test_missing_ranges_hint(cfg: Config, fixture_ranges: RangeSet) -> None:
    hint = missing_ranges_hint(cfg, RangeSet({}))
    assert hint is not None and hint.startswith("no crawler ranges loaded")
    assert "botguard ranges update" in hint and "--from" in hint
    assert missing_ranges_hint(cfg, RangeSet({"aws": ["203.0.113.0/24"]})) is not None
    assert missing_ranges_hint(cfg, fixture_ranges) is None
    # Fetched two months ago: a warning to refresh them.
    fetched = max(fixture_ranges.fetched_at.values())
    stale = missing_ranges_hint(cfg, fixture_ranges, now=fetched + timedelta(days=60))
    assert stale is not None and "60 days ago" in stale and "ranges update" in stale
    assert missing_ranges_hint(cfg, fixture_ranges, now=fetched + timedelta(days=20)) is None


# --------------------------------------------------------------------------- by rDNS
class FakeResolver:
    """In-memory DNS. Missing PTR → None; names mapped to 'timeout' raise TimeoutError."""

    def __init__(self, ptr: dict[str, str], forward: dict[str, list[str]],
                 delay: float = 0.0) -> None:
        self.ptr = ptr
        self.fwd = forward
        self.delay = delay
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def reverse(self, ip: str) -> str | None:
        with self._lock:
            self.calls.append(ip)
        if self.delay:
            time.sleep(self.delay)
        name = self.ptr.get(ip)
        if name == "timeout":
            raise TimeoutError("timed out")
        if name == "servfail":
            raise OSError("SERVFAIL")
        if name == "bad-idna":
            raise UnicodeError("label too long")
        return name

    def forward(self, name: str) -> list[str]:
        return self.fwd.get(name, [])


DNS = FakeResolver(
    ptr={
        "66.249.66.1": "crawl-66-249-66-1.googlebot.com.",
        "66.249.66.2": "crawl-66-249-66-2.googlebot.com",   # PTR only: forward says otherwise
        "203.0.113.9": "crawl-203-0-113-9.googlebot.com",   # forged PTR on a rented server
        "198.51.100.3": "host.evilgooglebot.com",            # suffix must match a whole label
        "2001:db8::1": "RATE-LIMITED-PROXY.GOOGLE.COM",
        "192.0.2.50": "timeout",
        "192.0.2.51": "servfail",
        "192.0.2.52": "bad-idna",
    },
    forward={
        "crawl-66-249-66-1.googlebot.com.": ["66.249.66.1"],
        "crawl-66-249-66-2.googlebot.com": ["66.249.66.99"],
        "host.evilgooglebot.com": ["198.51.100.3"],
        "RATE-LIMITED-PROXY.GOOGLE.COM": ["2001:0db8:0000::1", "192.0.2.7"],
    },
)


def _fresh(resolver: FakeResolver, delay: float = 0.0) -> FakeResolver:
    return FakeResolver(resolver.ptr, resolver.fwd, delay)


def test_forward_confirmed_rdns(cfg: Config) -> None:
    resolver = _fresh(DNS)
    ips = ["66.249.66.1", "66.249.66.2", "203.0.113.9", "198.51.100.3", "2001:db8::1",
           "192.0.2.99", "192.0.2.50", "192.0.2.51", "192.0.2.52"]
    frame = _frame([(ip, GOOGLEBOT) for ip in ips], cfg)
    out = verify_claims(frame, _rdns(cfg), RangeSet({}), resolver=resolver)
    assert dict(zip(ips, out["crawler_status"].to_list(), strict=True)) == {
        "66.249.66.1": "verified",
        "66.249.66.2": "fake",        # PTR only
        "203.0.113.9": "fake",        # forward lookup does not return it
        "198.51.100.3": "fake",       # evilgooglebot.com is not googlebot.com
        "2001:db8::1": "verified",    # case and address spelling do not matter
        "192.0.2.99": "fake",         # no PTR at all
        "192.0.2.50": "unverified",   # timeout: DNS could not tell
        "192.0.2.51": "unverified",   # SERVFAIL
        "192.0.2.52": "unverified",   # resolver error on a hostile name
    }
    assert out["verified_crawler"].to_list()[0] == "Googlebot"


def test_slow_resolver_times_out_as_unverified(cfg: Config) -> None:
    resolver = _fresh(DNS, delay=0.5)
    verifier = RdnsVerifier(resolver, timeout=0.05)
    frame = _frame([("66.249.66.1", GOOGLEBOT)], cfg)
    started = time.perf_counter()
    out = verify_claims(frame, _rdns(cfg), RangeSet({}), verifier=verifier)
    assert time.perf_counter() - started < 0.4
    assert out["crawler_status"].to_list() == ["unverified"]
    assert verifier.stats.timeouts == 1


def test_cache_and_budget_are_shared_across_batches(cfg: Config) -> None:
    resolver = _fresh(DNS)
    verifier = RdnsVerifier(resolver, timeout=1.0, max_lookups=2)
    rdns_cfg = _rdns(cfg)
    batch = _frame([("66.249.66.1", GOOGLEBOT), ("66.249.66.1", GOOGLEBOT),
                    ("66.249.66.2", GOOGLEBOT)], cfg)
    verify_claims(batch, rdns_cfg, RangeSet({}), verifier=verifier)
    assert sorted(resolver.calls) == ["66.249.66.1", "66.249.66.2"]
    assert verifier.stats.lookups == 2 and verifier.stats.cache_hits == 0

    again = _frame([("66.249.66.1", GOOGLEBOT), ("203.0.113.9", GOOGLEBOT)], cfg)
    out = verify_claims(again, rdns_cfg, RangeSet({}), verifier=verifier)
    assert sorted(resolver.calls) == ["66.249.66.1", "66.249.66.2"]  # nothing new asked
    assert verifier.stats.cache_hits == 1
    assert verifier.stats.over_budget == 1
    assert out["crawler_status"].to_list() == ["verified", "unverified"]


def test_cache_serves_another_claim_with_its_own_suffixes(cfg: Config) -> None:
    resolver = _fresh(DNS)
    verifier = RdnsVerifier(resolver)
    assert verifier.check("66.249.66.1", [".googlebot.com"]) == "verified"
    assert verifier.check("66.249.66.1", [".search.msn.com"]) == "fake"
    assert resolver.calls == ["66.249.66.1"]
    assert verifier.stats.cache_hits == 1


def test_ranges_take_precedence_over_rdns(cfg: Config, fixture_ranges: RangeSet) -> None:
    resolver = _fresh(DNS)
    frame = _frame([("66.249.66.1", GOOGLEBOT), ("192.0.2.1", GOOGLEBOT)], cfg)
    out = verify_claims(frame, _rdns(cfg), fixture_ranges, resolver=resolver)
    assert out["crawler_status"].to_list() == ["fake", "verified"]
    assert resolver.calls == []


def test_rdns_without_suffixes_cannot_verify(cfg: Config) -> None:
    resolver = _fresh(DNS)
    frame = _frame([("192.0.2.1", DUCK)], cfg)  # DuckDuckBot publishes no rDNS domain
    out = verify_claims(frame, _rdns(cfg), RangeSet({}), resolver=resolver)
    assert out["crawler_status"].to_list() == ["unverified"]
    assert resolver.calls == []


def test_disabled_rdns_never_queries(cfg: Config) -> None:
    resolver = _fresh(DNS)
    frame = _frame([("66.249.66.1", GOOGLEBOT)], cfg)
    out = verify_claims(frame, _rdns(cfg, enabled=False), RangeSet({}), resolver=resolver)
    assert out["crawler_status"].to_list() == ["unverified"] and resolver.calls == []


# --------------------------------------------------------------------------- real data
_COMBINED = re.compile(r'^(\S+) \S+ \S+ \[[^\]]+\] "[^"]*" \d+ \S+ "[^"]*" "([^"]*)"$')


def _elastic(shared_data: Path, cfg: Config) -> pl.DataFrame:
    path = shared_data / "access_logs" / "elastic_examples" / "apache_logs"
    rows = [m.groups() for line in path.read_text().splitlines() if (m := _COMBINED.match(line))]
    frame = pl.DataFrame(rows, schema={"ip": pl.String, "user_agent": pl.String}, orient="row")
    return frame.with_columns(claimed_crawler=claimed_crawler(frame["user_agent"], cfg))


@pytest.fixture
def google_ranges(cfg: Config, shared_data: Path, tmp_path: Path) -> RangeSet:
    google = [s for spec in cfg.crawlers.verify if spec.name == "Googlebot" for s in spec.ranges]
    update_ranges(cfg, from_dir=shared_data / "reference", data_dir=tmp_path, only=google)
    ranges = load_ranges(cfg, tmp_path)
    assert all(ranges.loaded(name) for name in google)
    return ranges


def test_real_log_has_three_fake_googlebots(
    cfg: Config, shared_data: Path, google_ranges: RangeSet
) -> None:
    out = verify_claims(_elastic(shared_data, cfg), cfg, google_ranges)
    googlebot = out.filter(pl.col("user_agent").str.contains("(?i)googlebot"))
    assert googlebot.height > 500
    fakes = set(googlebot.filter(pl.col("crawler_status") == "fake")["ip"])
    assert fakes == {"177.37.188.215", "188.35.22.24", "200.141.109.74"}
    verified = googlebot.filter(pl.col("crawler_status") == "verified")
    assert verified.height == googlebot.height - 3
    assert set(verified["verified_crawler"]) == {"Googlebot"}


def test_real_log_without_ranges_is_all_unverified(cfg: Config, shared_data: Path) -> None:
    out = verify_claims(_elastic(shared_data, cfg), cfg, RangeSet({}))
    claims = out.filter(pl.col("claimed_crawler").is_not_null())
    assert claims.height > 500
    assert set(claims["crawler_status"]) == {"unverified"}
    assert out.filter(pl.col("claimed_crawler").is_null())["crawler_status"].null_count() == (
        out.height - claims.height
    )


def test_feedly_is_not_a_google_claim(cfg: Config, shared_data: Path,
                                      google_ranges: RangeSet) -> None:
    # Feedly says "like FeedFetcher-Google": a pattern matching that would call it a fake Google.
    out = verify_claims(_elastic(shared_data, cfg), cfg, google_ranges)
    assert "65.19.138.33" in set(out["ip"])
    fakes = set(out.filter(pl.col("crawler_status") == "fake")["ip"])
    assert fakes == {"177.37.188.215", "188.35.22.24", "200.141.109.74"}
