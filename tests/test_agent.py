"""User-agent features: real agents in, exact flags out; exactness and speed guards."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from botguard.config import default_config_path, load_config
from botguard.config.models import AgentConfig
from botguard.errors import ConfigError
from botguard.features import agent
from botguard.features.agent import AGENT_FEATURES_SCHEMA, agent_features, agent_key

CHROME_120 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CHROME_32 = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/32.0.1700.102 Safari/537.36"
)

AGENTS = {
    "chrome": CHROME_120,
    "chrome_android": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "firefox_android": "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
    "safari": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "safari_iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "safari_ipad": "Mozilla/5.0 (iPad; CPU OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "edge": CHROME_120 + " Edg/120.0.2210.91",
    "edge_android": "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.6099.144 Mobile Safari/537.36 EdgA/120.0.2210.126",
    "samsung": "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like "
    "Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "googlebot_mobile": "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
    "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "gptbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot",
    "claudebot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
    "+claudebot@anthropic.com)",
    "perplexitybot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
    "PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
    "ahrefsbot": "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "semrushbot": "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "uptimerobot": "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "requests": "python-requests/2.31.0",
    "curl": "curl/8.4.0",
    "go": "Go-http-client/1.1",
    "okhttp": "okhttp/4.9.3",
    "cfnetwork": "ShopApp/5210 CFNetwork/1410.0.3 Darwin/22.6.0",
    "dalvik": "Dalvik/2.1.0 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)",
    "flutter": "Dart/3.2 (dart:io)",
    "axios": "axios/1.6.2",
    "scrapy": "Scrapy/2.11.0 (+https://scrapy.org)",
    "headless": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.109 Safari/537.36",
    "phantomjs": "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
    "PhantomJS/2.1.1 Safari/538.1",
    "zgrab": "Mozilla/5.0 zgrab/0.x",
    "nikto": "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
    "sqlmap": "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "garbage": "kmdjdheyytgebfghehhenegsdfsdf",
}

# name: (ua_family, ua_major, ua_os, ua_device)
PARSED = {
    "chrome": ("Chrome", 120, "Windows", "desktop"),
    "chrome_android": ("Chrome Mobile", 120, "Android", "mobile"),
    "firefox": ("Firefox", 121, "Windows", "desktop"),
    "firefox_android": ("Firefox Mobile", 121, "Android", "mobile"),
    "safari": ("Safari", 17, "Mac OS X", "desktop"),
    "safari_iphone": ("Mobile Safari", 17, "iOS", "mobile"),
    "safari_ipad": ("Mobile Safari", 17, "iOS", "tablet"),
    "edge": ("Edge", 120, "Windows", "desktop"),
    "edge_android": ("Edge Mobile", 120, "Android", "mobile"),
    "samsung": ("Samsung Internet", 23, "Android", "mobile"),
    "googlebot": ("Googlebot", 2, "Other", "bot"),
    "googlebot_mobile": ("Googlebot", 2, "Android", "bot"),
    "garbage": ("Other", None, "Other", "other"),
}

BROWSERS = [k for k, v in PARSED.items() if v[3] != "bot" and k != "garbage"]

# name: (crawler_name, crawler_tags)
CRAWLERS = {
    "googlebot": ("Googlebot", ["search-engine"]),
    "googlebot_mobile": ("Googlebot", ["search-engine"]),
    "bingbot": ("bingbot", ["search-engine"]),
    "gptbot": ("GPTBot", ["ai-crawler"]),
    "claudebot": ("ClaudeBot", ["ai-crawler"]),
    "perplexitybot": ("PerplexityBot", ["search-engine", "ai-crawler"]),
    "ahrefsbot": ("AhrefsBot", ["seo"]),
    "semrushbot": ("SemrushBot", ["seo"]),
    "uptimerobot": ("UptimeRobot", ["monitoring"]),
    "facebook": ("facebookexternalhit", ["social"]),
    "requests": ("python-requests", ["library"]),
    "curl": ("curl", ["library"]),
    "go": ("Go-http-client", ["library"]),
    "axios": ("axios", ["library"]),
    "scrapy": ("Scrapy", ["library"]),
    "headless": ("HeadlessChrome", ["automation"]),
    "phantomjs": ("PhantomJS", ["automation"]),
    "zgrab": ("zgrab", ["scanner"]),
    "nikto": ("Nikto", ["scanner"]),
    "sqlmap": ("sqlmap", ["scanner"]),
}

# flag: names it must be true for (false for every other agent in AGENTS)
FLAGS = {
    "is_ai_crawler": {"gptbot", "claudebot", "perplexitybot"},
    "is_search_engine": {"googlebot", "googlebot_mobile", "bingbot", "perplexitybot"},
    "is_seo_crawler": {"ahrefsbot", "semrushbot"},
    "is_monitor": {"uptimerobot"},
    "is_library": {"requests", "curl", "go", "axios", "scrapy"},
    # A mobile app's HTTP stack: its users are people, not a library nor a crawler (the
    # crawler list files okhttp under "library").
    "is_app": {"okhttp", "cfnetwork", "dalvik", "flutter"},
    "is_scanner": {"zgrab", "nikto", "sqlmap"},
    "is_headless": {"headless", "phantomjs"},
    "is_malformed": {"garbage"},
    "is_browser_like": set(BROWSERS),
    "known_crawler": set(CRAWLERS),
}


@pytest.fixture(scope="module")
def cfg() -> Any:
    try:
        return load_config()
    except ConfigError:
        # Only cfg.agent is read here: keep these tests about agents when another section of
        # the packaged config is mid-edit (its own tests report that).
        data = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
        return SimpleNamespace(agent=AgentConfig(**data["agent"]))


@pytest.fixture(scope="module")
def table(cfg: Any) -> dict[str, dict[str, Any]]:
    frame = agent_features(pl.Series([*AGENTS.values(), "", "-", None]), cfg)
    by_agent = {row["user_agent"]: row for row in frame.iter_rows(named=True)}
    return {name: by_agent[ua] for name, ua in AGENTS.items()} | {"<empty>": by_agent[None]}


def with_agent(cfg: Any, **changes: Any) -> Any:
    return SimpleNamespace(agent=cfg.agent.model_copy(update=changes))


@pytest.mark.parametrize("name", sorted(PARSED))
def test_parser_fields(table: dict[str, dict[str, Any]], name: str) -> None:
    row = table[name]
    assert (row["ua_family"], row["ua_major"], row["ua_os"], row["ua_device"]) == PARSED[name]


@pytest.mark.parametrize("name", sorted(CRAWLERS))
def test_known_crawlers_are_named_and_tagged(table: dict[str, dict[str, Any]], name: str) -> None:
    row = table[name]
    assert row["known_crawler"]
    assert (row["crawler_name"], row["crawler_tags"]) == CRAWLERS[name]
    assert row["ua_device"] == "bot"
    assert not row["is_browser_like"]
    assert row["ua_version_lag"] is None


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_flags(table: dict[str, dict[str, Any]], flag: str) -> None:
    assert {name for name in AGENTS if table[name][flag]} == FLAGS[flag]


def test_parser_bot_flag(table: dict[str, dict[str, Any]]) -> None:
    assert table["googlebot"]["ua_is_bot_parser"]
    assert table["gptbot"]["ua_is_bot_parser"]
    assert not any(table[name]["ua_is_bot_parser"] for name in BROWSERS)


def test_non_crawlers_have_no_crawler_columns(table: dict[str, dict[str, Any]]) -> None:
    for name in [*BROWSERS, "garbage", "<empty>"]:
        assert table[name]["crawler_name"] is None
        assert table[name]["crawler_tags"] == []


def test_none_empty_and_dash_are_one_empty_row(cfg: Any) -> None:
    frame = agent_features(pl.Series(["-", None, "", CHROME_120, "-"]), cfg)
    assert frame.height == 2
    empty = frame.row(0, named=True)
    assert empty["user_agent"] is None
    assert empty["is_empty"]
    assert not empty["is_malformed"]
    assert not empty["is_browser_like"]
    assert not empty["known_crawler"]
    assert empty["ua_family"] is None
    assert empty["ua_device"] is None
    assert not frame["is_empty"][1]


def test_version_lag_against_newest_of_the_family(cfg: Any) -> None:
    frame = agent_features(pl.Series([CHROME_32, CHROME_120, AGENTS["firefox"]]), cfg)
    lag = dict(zip(frame["user_agent"], frame["ua_version_lag"], strict=True))
    stale = dict(zip(frame["user_agent"], frame["ua_stale"], strict=True))
    assert lag[CHROME_32] == 88
    assert stale[CHROME_32]
    assert lag[CHROME_120] == 0
    assert not stale[CHROME_120]
    assert lag[AGENTS["firefox"]] == 0  # Firefox is judged against Firefox only


def test_version_lag_is_data_driven(cfg: Any) -> None:
    """Replaying a 2014 log: Chrome 32 next to Chrome 34 is current, not stale."""
    chrome_34 = CHROME_32.replace("Chrome/32.0.1700.102", "Chrome/34.0.1847.116")
    frame = agent_features(pl.Series([CHROME_32, chrome_34]), cfg)
    lag = dict(zip(frame["user_agent"], frame["ua_version_lag"], strict=True))
    assert (lag[CHROME_32], lag[chrome_34]) == (2, 0)
    assert not frame["ua_stale"].any()


def test_version_lag_of_tables_built_apart_is_that_of_one_table(cfg: Any) -> None:
    """An incremental run parses only new agents and recomputes the lag over the kept and the
    new rows: the same table as parsing all of them together."""
    from botguard.features import agent_table
    from botguard.features.agent import version_lag

    safari_26 = AGENTS["safari"].replace("Version/17.1", "Version/26.0")
    earlier = [CHROME_32, AGENTS["firefox"], AGENTS["safari"], None]
    later = [CHROME_120, safari_26, AGENTS["chrome_android"]]
    whole = agent_table(pl.Series([*earlier, *later]), cfg)
    apart = pl.concat([agent_table(pl.Series(earlier), cfg), agent_table(pl.Series(later), cfg)])
    assert_frame_equal(version_lag(apart).sort("user_agent", nulls_last=False), whole)
    # Chrome 32 was current among the earlier agents alone.
    alone = agent_table(pl.Series(earlier), cfg)
    assert alone.filter(pl.col("user_agent") == CHROME_32)["ua_version_lag"][0] == 0
    assert whole.filter(pl.col("user_agent") == CHROME_32)["ua_version_lag"][0] == 88


def test_chrome_mobile_shares_chrome_versions(cfg: Any) -> None:
    old_mobile = AGENTS["chrome_android"].replace("Chrome/120.0.0.0", "Chrome/90.0.4430.91")
    frame = agent_features(pl.Series([CHROME_120, old_mobile]), cfg)
    row = frame.filter(pl.col("user_agent") == old_mobile).row(0, named=True)
    assert row["ua_version_lag"] == 30
    assert row["ua_stale"]


def test_safari_year_based_versions(cfg: Any) -> None:
    """Safari 26 followed 18: an 18 next to a 26 is one release behind, not eight."""
    safari_26 = AGENTS["safari"].replace("Version/17.1", "Version/26.0")
    safari_18 = AGENTS["safari"].replace("Version/17.1", "Version/18.6")
    frame = agent_features(pl.Series([safari_26, safari_18, AGENTS["safari"]]), cfg)
    lag = dict(zip(frame["user_agent"], frame["ua_version_lag"], strict=True))
    assert (lag[safari_26], lag[safari_18], lag[AGENTS["safari"]]) == (0, 1, 2)
    assert not frame["ua_stale"].any()


@pytest.mark.parametrize(
    "ua",
    [
        CHROME_120.replace("Chrome/120.0.0.0", "Chrome/999.0.0.0"),  # impossible version
        CHROME_120.replace("x64)", "x64"),  # unbalanced parentheses
        CHROME_120 + "\x00",  # control character
        "Hello, World",  # no product token
        "abc/1",  # absurdly short
        "Mozilla/5.0 (X11; Linux x86_64) qwrtzpsdf/1.0",  # keyboard mash inside a real shape
    ],
)
def test_malformed(cfg: Any, ua: str) -> None:
    row = agent_features(pl.Series([ua]), cfg).row(0, named=True)
    assert row["is_malformed"]
    assert not row["is_browser_like"]


@pytest.mark.parametrize(
    "ua",
    [
        "ELinks (0.4.3; NetBSD 3.0.2_PATCH sparc64; 141x19)",  # "name (version" counts too
        "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0; MDDRJS)",  # acronym
        "ia_archiver",  # short and without a version, but a known crawler
        "Safari/9537.73.11 CFNetwork/673.0.3 Darwin/13.0.0 (x86_64)",  # app, not a browser claim
    ],
)
def test_not_malformed(cfg: Any, ua: str) -> None:
    assert not agent_features(pl.Series([ua]), cfg)["is_malformed"][0]


def test_schema_order_and_one_row_per_agent(cfg: Any) -> None:
    agents = [*AGENTS.values(), *AGENTS.values(), None, "-"]
    frame = agent_features(pl.Series(agents), cfg)
    assert frame.schema == pl.Schema(AGENT_FEATURES_SCHEMA)
    assert frame.height == len(AGENTS) + 1
    assert frame["user_agent"].to_list() == [None, *sorted(AGENTS.values())]


def test_empty_input(cfg: Any) -> None:
    frame = agent_features(pl.Series([], dtype=pl.String), cfg)
    assert frame.is_empty()
    assert frame.schema == pl.Schema(AGENT_FEATURES_SCHEMA)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([*AGENTS.values(), "", "-", None, "x"]), max_size=12), st.randoms())
def test_input_order_and_duplicates_do_not_matter(agents: list[str | None], rnd: Any) -> None:
    cfg: Any = SimpleNamespace(agent=_default_agent_config())
    shuffled = agents * 2
    rnd.shuffle(shuffled)
    a = agent_features(pl.Series(agents, dtype=pl.String), cfg)
    b = agent_features(pl.Series(shuffled, dtype=pl.String), cfg)
    assert a.equals(b)
    assert a.height == len({agent_key_py(x) for x in agents})


def agent_key_py(ua: str | None) -> str | None:
    return None if ua in (None, "", "-") else ua


def _default_agent_config() -> AgentConfig:
    data = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    return AgentConfig(**data["agent"])


def test_second_call_hits_the_cache(cfg: Any) -> None:
    agent.clear_agent_cache()
    series = pl.Series([CHROME_120, CHROME_32, "", None])
    agent_features(series, cfg)
    first = agent.agent_cache_info()
    assert (first.hits, first.misses, first.size) == (0, 2, 2)
    agent_features(series, cfg)
    second = agent.agent_cache_info()
    assert (second.hits, second.misses, second.size) == (2, 2, 2)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = agent._ParseCache(max_size=2)
    for key in "abc":
        cache.put(key, agent.ParsedAgent(None, None, None, None, False))
    assert list(cache.data) == ["b", "c"]


def test_agent_key_joins_hits_to_features(cfg: Any) -> None:
    hits = pl.DataFrame({"user_agent": [CHROME_120, "-", None, "", CHROME_120]})
    features = agent_features(hits["user_agent"], cfg)
    joined = hits.with_columns(key=agent_key(pl.col("user_agent"))).join(
        features, left_on="key", right_on="user_agent", how="left", nulls_equal=True
    )
    assert joined["is_empty"].to_list() == [False, True, True, True, False]


def test_extra_crawler_patterns(cfg: Any) -> None:
    ua = "Mozilla/5.0 (compatible; AcmeInternalBot/3.1)"
    lookbehind = "Mozilla/5.0 (compatible; probe-7/1.0)"
    custom = with_agent(cfg, extra_crawler_patterns=["AcmeInternalBot", r"(?<=; )probe-\d"])
    frame = agent_features(pl.Series([ua, lookbehind, CHROME_120]), custom)
    rows = {r["user_agent"]: r for r in frame.iter_rows(named=True)}
    assert rows[ua]["known_crawler"]
    assert rows[ua]["crawler_name"] == "AcmeInternalBot"
    assert rows[ua]["crawler_tags"] == ["other"]
    assert rows[lookbehind]["crawler_name"] == "probe-7"  # Python-only regex still works
    assert not rows[CHROME_120]["known_crawler"]


def test_config_patterns_drive_the_flags(cfg: Any) -> None:
    ua = "MyFetcher/1.0 (internal)"
    plain = agent_features(pl.Series([ua]), cfg).row(0, named=True)
    assert not plain["is_library"]
    custom = with_agent(cfg, library_patterns=["(?i)myfetcher"])
    assert agent_features(pl.Series([ua]), custom)["is_library"][0]


def test_every_crawler_list_instance_is_known(cfg: Any) -> None:
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    instances = sorted({i for e in CRAWLER_USER_AGENTS_DATA for i in e["instances"]})
    frame = agent_features(pl.Series(instances), cfg)
    # Known, except mobile apps' HTTP stacks (okhttp), which botguard reads as people's apps.
    assert frame.filter(~pl.col("known_crawler") & ~pl.col("is_app"))["user_agent"].to_list() == []
    vocabulary = set(agent.TAG_VOCABULARY)
    assert set(frame["crawler_tags"].explode().drop_nulls()) <= vocabulary


def test_fast_resolver_is_exactly_ua_parser() -> None:
    """The Rust pre-scan plus one Python matcher gives what the linear Python scan gives."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    instances = sorted({i for e in CRAWLER_USER_AGENTS_DATA for i in e["instances"]})
    texts = [t for t in [*instances[::6], *AGENTS.values()] if t.isascii() and t.isprintable()]
    assert agent._resolve_fast(texts) == agent._resolve_basic(texts)


def test_fast_resolver_shares_results_only_where_the_groups_agree() -> None:
    """Agents that differ outside a matcher's groups share its result; agents whose groups
    differ (another version, another device model) do not, and a matcher that raises on odd
    input is passed over as the linear scan does."""
    chrome = "Mozilla/5.0 (Linux; Android 14; {model}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v} Mobile Safari/537.36"
    texts = [
        chrome.format(model=m, v=v)
        for m in ("SM-S918B", "SM-A546B", "Pixel 8", "moto g54 5G")
        for v in ("131.0.6778.39", "131.0.6778.104", "130.0.6723.58", "99.0.4844.88")
    ]
    fast = agent._resolve_fast(texts)
    assert fast == agent._resolve_basic(texts)
    # The browser's result does not depend on the device model: one object per version.
    # Another version, another result; all share the one Android 14 result.
    assert fast[0][0] is fast[4][0] is fast[8][0]
    assert fast[0][0] is not fast[1][0] and fast[1][0].patch_minor == "104"
    assert len({id(r[1]) for r in fast}) == 1
    assert len({r[2].model for r in fast}) == 4  # one device result per model

    class Raising:
        """A matcher whose pattern matches but whose result cannot be built."""

        pattern = re.compile(r"(Chrome)/(\d+)")

        def __call__(self, text: str) -> None:
            raise ValueError("no family")

    matchers, _ = agent._matchers()
    ua_matchers = [Raising(), *matchers[0]]
    for text in texts[:3]:
        got = agent._first_result(ua_matchers, 9, text, 0, {})
        assert got == agent._scan(matchers[0], text)


def test_parse_matches_user_agents_library() -> None:
    import user_agents

    for ua in [*AGENTS.values(), CHROME_32]:
        ref = user_agents.parse(ua)
        got = agent.parse_agents([ua])[0]
        assert (got.family, got.os, got.is_bot) == (ref.browser.family, ref.os.family, ref.is_bot)
        major = ref.browser.version[0] if ref.browser.version else None
        assert got.major == (major if isinstance(major, int) else None)


def test_agents_sharing_parsed_parts_share_a_summary_only_where_user_agents_agrees(count_calls: Any) -> None:
    """Agents with the same parsed parts share one run of user-agents' rules unless their
    texts differ in a word the rules read ('Silk', 'Maemo', 'X11' ...): each agent's device
    class is what user-agents itself says of it."""
    import user_agents

    base = [*AGENTS.values(), CHROME_32, CHROME_120,
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Silk/3.68 Safari/534.30",
            "Mozilla/5.0 (X11; Linux armv7l; Maemo; Opera Mobi/4; U; fr; rv:1.9.1.6) Gecko/20091201 Firefox/3.5.6 Maemo Browser 1.5.6"]
    words = ["", " Silk", " Maemo", " X11 Linux", " Mobile Safari", " iPhone;", " Windows NT", " J2ME", " NokiaBrowser Mobile"]
    texts = sorted({b + w + f" id/{k:016x}" for b in base for k, w in enumerate(words)} | {b + " id/1" for b in base})
    runs = count_calls(agent, "_summarise")
    got = agent.parse_agents(texts)
    assert runs.n < len(texts)
    for text, parsed in zip(texts, got, strict=True):
        ref = user_agents.parse(text)
        device = ("bot" if ref.is_bot else "tablet" if ref.is_tablet else "mobile" if ref.is_mobile
                  else "desktop" if ref.is_pc else "other")
        assert (parsed.family, parsed.os, parsed.device, parsed.is_bot) == (
            ref.browser.family, ref.os.family, device, ref.is_bot), text


def test_non_ascii_agents_take_the_python_path(cfg: Any) -> None:
    ua = CHROME_120 + " Ünïcødé/1.0"
    row = agent_features(pl.Series([ua]), cfg).row(0, named=True)
    assert (row["ua_family"], row["ua_major"], row["ua_os"]) == ("Chrome", 120, "Windows")


def test_many_python_agents_are_split_across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Mozilla/5.0 (Windows NT 10.0) Chrome/{v}.0.0.0 Safari/537.36 é" for v in range(4)]
    serial = agent._resolve_python(texts)
    monkeypatch.setattr(agent, "PARALLEL_MIN_PYTHON_AGENTS", 2)
    assert agent._resolve_python(texts) == serial


def test_large_batches_use_the_vectorized_path(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [CHROME_120, CHROME_32, AGENTS["googlebot"], CHROME_120 + " é"]
    serial = agent.parse_agents(texts)
    monkeypatch.setattr(agent, "VECTOR_MIN_AGENTS", 1)
    calls: list[int] = []
    fast = agent._resolve_fast

    def spy(texts: list[str]) -> list[Any]:
        calls.append(len(texts))
        return fast(texts)

    monkeypatch.setattr(agent, "_resolve_fast", spy)
    assert agent.parse_agents(texts) == serial
    assert calls == [3]  # the non-ASCII agent went the Python way


@pytest.mark.parametrize(
    ("pattern", "ascii"),
    [
        (r"\w+\d", "[0-9A-Za-z_]+[0-9]"),
        (r"[\w\-]", r"[0-9A-Za-z_\-]"),
        (r"\bbot\b", r"(?-u:\b)bot(?-u:\b)"),
        (r"[^\s]\\w", r"[^ \t\n\r\f\v]\\w"),
        (r"[]\d]", r"[\]0-9]"),
    ],
)
def test_asciify(pattern: str, ascii: str) -> None:
    assert agent._asciify(pattern) == ascii


def test_literal_crawler_patterns() -> None:
    assert agent._literal(r"Googlebot\/") == "Googlebot/"
    assert agent._literal(r"grub\.org") == "grub.org"
    assert agent._literal(r"^Seekbot") is None
    assert agent._literal(r"\d+") is None


def test_user_agents_still_parses_after_botguard_deferred_its_legacy_module() -> None:
    """botguard defers ua-parser's legacy module (user-agents imports it, botguard never calls
    it). In a fresh process: it is still deferred after botguard parsed agents, and eight
    threads that then use user-agents at once all get botguard's answers."""
    import subprocess
    import sys

    code = """
import sys, threading
from botguard.features import agent
text = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
(ours,) = agent.parse_agents([text])
print(type(sys.modules["ua_parser.user_agent_parser"]).__name__)
import user_agents
out = []
def run():
    try:
        ua = user_agents.parse(text)
        out.append((ua.browser.family, ua.browser.version[0], ua.os.family, ua.is_mobile, ua.is_bot))
    except Exception as exc:
        out.append(repr(exc))
threads = [threading.Thread(target=run) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(set(map(str, out))))
print((ours.family, ours.major, ours.os, True, False))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    kind, answers, ours = proc.stdout.strip().splitlines()
    assert kind == "_DeferredModule"
    assert answers == str([ours])


def test_in_app_browsers_are_browsers(cfg: Any) -> None:
    """A shopper tapping a link in Instagram or Facebook browses in the app's web view."""
    agents = pl.Series("user_agent", [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Instagram 357.0.0.25.101 (iPhone14,2; iOS 17_6; en_US; en; scale=3.00; 1170x2532; 123)",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/126.0.6478.134 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/470.0.0.40.108;]",
    ])
    table = agent_features(agents, cfg).sort("ua_family")
    assert table["ua_family"].to_list() == ["Facebook", "Instagram"]
    assert table["is_browser_like"].to_list() == [True, True]
    assert not table["is_library"].any() and not table["ua_stale"].any()
