"""User-agent features: one row per distinct agent, joined back to hits by ``agent_key``.

Three sources of evidence, each answered the cheapest way that is still exact:

* **ua-parser** (through user-agents' device rules) says what the agent *claims* to be. Its pure
  Python resolver tries ~1,300 regexes in order and costs ~0.7 ms per agent, so a rotating
  scraper with 20,000 distinct agents would take 13 s. We run the same regexes, in the same
  order, as vectorized Polars (Rust) scans to find the first matcher that fires, then call only
  that matcher in Python to build its result. Rust and Python regexes agree on ASCII text once
  ``\\w``/``\\d``/``\\b``/``\\s`` are spelled as ASCII classes, so agents with non-ASCII or control
  characters take the pure Python resolver instead (in two processes when there are many), and
  so do small batches, where compiling ~1,300 Rust regexes would cost more than it saves.
  Results are cached per agent string across calls, so a stream of batches parses each once.
* **crawler-user-agents** says which known crawler it is and what kind. Almost all of its
  ~1,500 patterns are literals once ``\\/``-style escapes are removed: they go through one
  Aho-Corasick pass (``str.extract_many``); the few real regexes get one Rust scan each.
* **config patterns** (``agent.*_patterns``) flag libraries, scanners and headless browsers.

Tags from the crawler list are normalised to ``TAG_VOCABULARY``; a match on several entries keeps
the union of their tags and names the crawler after the most specific entry.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import re
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numpy as np
import polars as pl
from ua_parser.core import OS, Device, Matcher, Matchers, UserAgent
from ua_parser.loaders import load_lazy_builtins

if TYPE_CHECKING:
    from botguard.config import Config

from botguard.schema import AGENT_FEATURES_SCHEMA


class _DeferredModule(types.ModuleType):
    """Stands in for a module until one of its attributes is asked for; then imports it (once,
    under a lock, so threads asking at the same moment all get it) and forwards to it.

    user-agents imports ua-parser's legacy ``user_agent_parser``, which builds its own
    thousand parsers at import (90 ms, a tenth of a cron run); botguard resolves agents with
    ua-parser's builtin matchers and uses user-agents only for its rules, so that module is
    never used by botguard. (importlib's ``LazyLoader`` does the same, but not thread-safely on 3.11.)
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_bg_lock"] = threading.Lock()
        self.__dict__["_bg_real"] = None

    def __getattr__(self, attr: str) -> Any:
        real = self.__dict__["_bg_real"]
        if real is None:
            with self.__dict__["_bg_lock"]:
                real = self.__dict__["_bg_real"]
                if real is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    real = importlib.import_module(self.__name__)
                    self.__dict__["_bg_real"] = real
        return getattr(real, attr)


def _defer_module(name: str) -> None:
    """Register a ``_DeferredModule`` for ``name`` unless it is imported already."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    package = importlib.import_module(parent) if parent else None
    module = _DeferredModule(name)
    sys.modules[name] = module
    # ``from package import module`` finds it as the package's attribute (the import system's
    # own path would look at the module's ``__spec__`` and, finding none, import it).
    if package is not None:
        setattr(package, child, module)


@cache
def _user_agents() -> Any:
    """user-agents' parsers module, imported with the legacy ua-parser module deferred."""
    _defer_module("ua_parser.user_agent_parser")
    from user_agents import parsers

    return parsers


#: Values that mean "no user agent" in logs; they all become the one null key.
EMPTY_AGENTS = ("", "-")

#: crawler-user-agents tag -> our tag. Anything else becomes "other".
TAG_MAP = {
    "search-engine": "search-engine",
    "ai-crawler": "ai-crawler",
    "seo": "seo",
    "monitoring": "monitoring",
    "social-preview": "social",
    "feed-reader": "feed",
    "http-library": "library",
    "scanner": "scanner",
    "archiver": "archiver",
    "advertising": "advertising",
    "academic": "academic",
    "browser-automation": "automation",
}
TAG_VOCABULARY = (*TAG_MAP.values(), "other")

#: ua-parser family -> the family whose version numbers it shares, for the lag. Only these
#: families can be browser-like.
BROWSER_FAMILIES = {
    **dict.fromkeys(
        ["Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chrome Mobile WebView", "Chromium"],
        "Chrome",
    ),
    **dict.fromkeys(["Firefox", "Firefox Mobile", "Firefox iOS", "Iceweasel"], "Firefox"),
    **dict.fromkeys(["Safari", "Mobile Safari", "Mobile Safari UI/WKWebView"], "Safari"),
    **dict.fromkeys(["Edge", "Edge Mobile"], "Edge"),
    **dict.fromkeys(["Opera", "Opera Mobile"], "Opera"),
    "Samsung Internet": "Samsung Internet",
    "Yandex Browser": "Yandex Browser",
    "UC Browser": "UC Browser",
    "Vivaldi": "Vivaldi",
    "Brave": "Brave",
    "Amazon Silk": "Amazon Silk",
    "Android": "Android",
    "IE": "IE",
    # In-app browsers: a shopper tapping a link in a social app browses in the app's web view.
    **{f: f for f in ["Instagram", "Facebook", "TikTok", "Pinterest", "Snapchat", "LINE", "WeChat",
                      "Google", "Twitter", "LinkedIn", "Naver", "KakaoTalk", "DuckDuckGo Mobile"]},
}

#: ua_stale when a browser is more than this many majors behind the newest of its family in the
#: same input. Chrome/Edge/Opera ship a major every ~4 weeks (20 ≈ 1.5 years); Firefox too, but
#: ESR builds legitimately trail by up to ~25; Safari ships one a year; Samsung Internet ~3-4;
#: Yandex numbers by year. Families not listed are never stale.
STALE_MAJOR_LAG = {
    "Chrome": 20,
    "Edge": 20,
    "Opera": 20,
    "Firefox": 30,
    "Safari": 3,
    "Samsung Internet": 6,
    "Yandex Browser": 2,
}

#: A claimed major above this is impossible (malformed); also keeps forged versions from
#: becoming the "newest" that every other agent is judged against.
MAX_PLAUSIBLE_MAJOR = {
    "Chrome": 250,
    "Edge": 250,
    "Opera": 250,
    "Firefox": 250,
    "Safari": 40,
    "Samsung Internet": 80,
    "IE": 11,
}

#: Apple jumped Safari/iOS from 18 to 26 (year-based) in 2025; count 26 as the 19th release.
SAFARI_YEAR_JUMP = (26, 7)

PARSE_CACHE_SIZE = 100_000
#: Polars compiles ~1,300 regexes per call and then costs ~60 µs per agent; the Python scan
#: costs ~0.5 ms per agent and compiles (lazily) every regex it passes, where after the Polars
#: pre-scan Python compiles only the few that match. Measured crossover: ~300 new ASCII agents
#: (558 agents of a real log: 0.30 s against 0.44 s).
VECTOR_MIN_AGENTS = 300
#: Agents left to the Python scan (non-ASCII or control characters, or a small batch) are split
#: across two processes above this many; below it, starting a process costs more than it saves.
PARALLEL_MIN_PYTHON_AGENTS = 2_000
_BLOCK = 64  # matchers scanned per Polars select: parallel within a block, shrinking between

_SHORT_AGENT = 10
# "name/version" (RFC 9110), or the common "name 1.2" / "name (1.2" of text browsers and apps.
_PRODUCT_TOKEN = r"[A-Za-z][A-Za-z0-9._+\-]*(?:/[A-Za-z0-9]|[ (]+v?[0-9]+\.[0-9])"
# Six lowercase consonants in a row almost never occur in product names or words; keyboard-mash
# and random strings produce them often ("kmdjdheyytgebfghehhenegsdfsdf"). Uppercase runs are
# acronyms (MSIE's "MDDRJS"), so they do not count.
_GIBBERISH = r"[bcdfghjklmnpqrstvwxz]{6}"


def agent_key(expr: pl.Expr) -> pl.Expr:
    """The join key for ``agent_features``: ``None``, ``""`` and ``"-"`` all become null.

    Join with ``nulls_equal=True`` so hits without an agent find the empty row.
    """
    return pl.when(expr.is_in(list(EMPTY_AGENTS))).then(None).otherwise(expr)


def agent_features(agents: pl.Series, cfg: Config) -> pl.DataFrame:
    """One row per distinct agent in ``agents`` (sorted, the empty agent first) with
    ``AGENT_FEATURES_SCHEMA`` columns; ``cfg`` is the full typed config (``cfg.agent`` is read).

    Joining back to hits: ``agent_key`` on the hits side, ``nulls_equal=True``.

    * ``ua_device`` is ``bot`` for anything ua-parser calls a spider or the crawler list knows
      (libraries included); ``crawler_tags`` is ``[]`` when no entry matched.
    * ``is_library`` / ``is_scanner`` / ``is_headless``: the config patterns, or the crawler
      list's library / scanner / automation tags.
    * ``is_malformed`` (never for the empty agent): control characters; unbalanced parentheses;
      a ``Mozilla/`` agent whose browser major is impossible (``MAX_PLAUSIBLE_MAJOR``); and,
      unless the crawler list or a config pattern knows the agent: under 10 characters, no
      product token (``name/x``, ``name 1.2``), or a run of six lowercase consonants.
    * ``is_browser_like``: ``Mozilla/5.0`` and a family in ``BROWSER_FAMILIES``, and not a
      crawler, library, scanner, headless, parser-bot or malformed agent.
    * ``ua_version_lag``: majors behind the newest browser-like major of the same family
      (``BROWSER_FAMILIES`` value) in this input, so a replayed old log is judged by its own
      time; ``ua_stale`` when it exceeds ``STALE_MAJOR_LAG`` (false when lag is null).
    """
    keys = (
        pl.DataFrame({"user_agent": agents.cast(pl.String)})
        .select(agent_key(pl.col("user_agent")).alias("user_agent"))
        .unique()
        .sort("user_agent", nulls_last=False)
    )
    texts = keys["user_agent"].fill_null("")
    parsed = _parse_cached(texts.to_list())
    crawler = _match_crawlers(texts, list(cfg.agent.extra_crawler_patterns))
    frame = keys.with_columns(
        pl.Series("ua_family", [p.family for p in parsed], pl.String),
        pl.Series("ua_major", [p.major for p in parsed], pl.Int32),
        pl.Series("ua_os", [p.os for p in parsed], pl.String),
        pl.Series("_device", [p.device for p in parsed], pl.String),
        pl.Series("ua_is_bot_parser", [p.is_bot for p in parsed], pl.Boolean),
        crawler["known_crawler"],
        crawler["crawler_name"],
        crawler["crawler_tags"],
        _any_match(texts, cfg.agent.library_patterns).alias("_library"),
        _any_match(texts, cfg.agent.tool_patterns).alias("_tool"),
        _any_match(texts, cfg.agent.headless_patterns).alias("_headless"),
        _any_match(texts, cfg.agent.service_patterns).alias("_service"),
        _any_match(texts, cfg.agent.app_patterns).alias("_app"),
        _any_match(texts, cfg.agent.ai_crawler_patterns).alias("_ai"),
    )
    return frame.pipe(_flags).select(
        pl.col(name).cast(dtype) for name, dtype in AGENT_FEATURES_SCHEMA.items()
    )


def _flags(frame: pl.DataFrame) -> pl.DataFrame:
    """Derive the boolean flags, malformed heuristics and version lag from the raw evidence."""
    ua = pl.col("user_agent")
    # A mobile app's HTTP stack is neither a crawler nor a library, even where the crawler list
    # files it under "library" (okhttp): its users are people.
    app = pl.col("_app") & ~pl.col("_tool") & ~pl.col("_headless")
    frame = frame.with_columns(
        is_app=app,
        known_crawler=pl.col("known_crawler") & ~app,
        crawler_name=pl.when(app).then(None).otherwise(pl.col("crawler_name")),
        crawler_tags=pl.when(app).then(pl.lit([], pl.List(pl.String))).otherwise(pl.col("crawler_tags")),
        _library=pl.col("_library") & ~app,
    )
    tags = pl.col("crawler_tags")
    empty = ua.is_null()
    lag_family = _lag_family()
    known = (
        pl.col("known_crawler")
        | pl.col("is_library")
        | pl.col("is_scanner")
        | pl.col("is_headless")
        | pl.col("is_service")
        | pl.col("is_app")
    )
    frame = frame.with_columns(
        ua_device=pl.when(empty)
        .then(None)
        .when(pl.col("ua_is_bot_parser") | pl.col("known_crawler"))
        .then(pl.lit("bot"))
        .otherwise(pl.col("_device")),
        is_ai_crawler=tags.list.contains("ai-crawler") | pl.col("_ai"),
        is_search_engine=tags.list.contains("search-engine"),
        is_seo_crawler=tags.list.contains("seo"),
        is_monitor=tags.list.contains("monitoring"),
        is_service=pl.col("_service") | tags.list.contains("monitoring"),
        # The crawler list also tags libraries, scanners and automation; either source counts.
        is_library=pl.col("_library") | tags.list.contains("library"),
        is_scanner=pl.col("_tool") | tags.list.contains("scanner"),
        is_headless=pl.col("_headless") | tags.list.contains("automation"),
        is_empty=empty,
        _lag_family=lag_family,
    )
    impossible = pl.col("ua_major") > pl.col("_lag_family").replace_strict(
        MAX_PLAUSIBLE_MAJOR, default=None, return_dtype=pl.Int32
    )
    unbalanced = (ua.str.count_matches(r"\(") != ua.str.count_matches(r"\)")) | ua.str.contains(
        r"^[^(]*\)"
    )
    frame = frame.with_columns(
        is_malformed=~empty
        & (
            ua.str.contains(r"[\x00-\x1f\x7f]")
            | unbalanced
            | (ua.str.starts_with("Mozilla/") & impossible).fill_null(False)
            | (
                ~known
                & (
                    (ua.str.len_chars() < _SHORT_AGENT)
                    | ~ua.str.contains(_PRODUCT_TOKEN)
                    | ua.str.contains(_GIBBERISH)
                )
            )
        )
    )
    frame = frame.with_columns(
        is_browser_like=~empty
        & ua.str.starts_with("Mozilla/5.0 ")
        & lag_family.is_not_null()
        & ~(known | pl.col("ua_is_bot_parser") | pl.col("is_malformed"))
    )
    return version_lag(frame)


def _lag_family() -> pl.Expr:
    """The browser family whose majors an agent's version lag is counted in (None: none)."""
    return pl.col("ua_family").replace_strict(BROWSER_FAMILIES, default=None)


def version_lag(frame: pl.DataFrame) -> pl.DataFrame:
    """``ua_version_lag`` and ``ua_stale`` of every agent of ``frame`` (``ua_family``,
    ``ua_major``, ``is_browser_like``): majors behind the newest browser-like major of its
    family among these agents. The only columns that depend on the other agents: a table
    kept from earlier runs gets them again over the agents of this one."""
    lag_family = _lag_family()
    major = (
        pl.when((lag_family == "Safari") & (pl.col("ua_major") >= SAFARI_YEAR_JUMP[0]))
        .then(pl.col("ua_major") - SAFARI_YEAR_JUMP[1])
        .otherwise(pl.col("ua_major"))
    )
    newest = pl.when(pl.col("is_browser_like")).then(major).max().over(lag_family)
    lag = pl.when(pl.col("is_browser_like")).then(newest - major)
    stale = lag > lag_family.replace_strict(STALE_MAJOR_LAG, default=None, return_dtype=pl.Int32)
    return frame.with_columns(ua_version_lag=lag.cast(pl.Int32), ua_stale=stale.fill_null(False))


def _any_match(texts: pl.Series, patterns: Sequence[str]) -> pl.Series:
    out = pl.repeat(False, len(texts), eager=True)
    for pattern in patterns:
        out = out | regex_contains(texts, pattern)
    return out


def regex_contains(texts: pl.Series, pattern: str) -> pl.Series:
    """Regex search in Rust; patterns Rust cannot compile (look-around) fall back to Python."""
    try:
        return texts.str.contains(pattern)
    except pl.exceptions.ComputeError:
        rx = re.compile(pattern)
        return pl.Series([rx.search(t) is not None for t in texts], dtype=pl.Boolean)


# --- crawler-user-agents ---------------------------------------------------------------------


@dataclass(frozen=True)
class _CrawlerEntry:
    pattern: str
    literal: str | None  # the text it matches when the pattern is a plain string
    tags: tuple[str, ...]
    generic: bool  # a library or automation tool: a weaker name than a crawler built on it


@dataclass(frozen=True)
class _CrawlerIndex:
    entries: tuple[_CrawlerEntry, ...]
    literals: dict[str, list[int]]  # literal text -> entry ids (Aho-Corasick)
    regexes: tuple[tuple[int, str], ...]  # (entry id, pattern) for the real regexes


def _literal(pattern: str) -> str | None:
    r"""The literal text a pattern matches, if it is one (``Googlebot\/`` -> ``Googlebot/``)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                out.append(pattern[i + 1])
                i += 2
                continue
            return None
        if ch in ".^$*+?{}[]|()":
            return None
        out.append(ch)
        i += 1
    return "".join(out) or None


def _entry(pattern: str, raw_tags: Iterable[str], *, listed: bool) -> _CrawlerEntry:
    tags = tuple(sorted({TAG_MAP.get(t, "other") for t in raw_tags} or {"other"}, key=_tag_rank))
    # Extra patterns from config always run as regexes: the user wrote a regex.
    literal = _literal(pattern) if listed else None
    return _CrawlerEntry(pattern, literal, tags, generic=set(tags) <= {"library", "automation"})


def _tag_rank(tag: str) -> int:
    return TAG_VOCABULARY.index(tag)


@cache
def _crawler_index(extra: tuple[str, ...]) -> _CrawlerIndex:
    """Built once per set of extra patterns from the installed crawler-user-agents package."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    entries = [
        _entry(e["pattern"], e.get("tags", ()), listed=True) for e in CRAWLER_USER_AGENTS_DATA
    ]
    entries += [_entry(p, (), listed=False) for p in extra]
    literals: dict[str, list[int]] = {}
    regexes = []
    for i, entry in enumerate(entries):
        if entry.literal is None:
            regexes.append((i, entry.pattern))
        else:
            literals.setdefault(entry.literal, []).append(i)
    return _CrawlerIndex(tuple(entries), literals, tuple(regexes))


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _match_crawlers(texts: pl.Series, extra: list[str]) -> pl.DataFrame:
    """known_crawler, crawler_name, crawler_tags for each text (same order)."""
    index = _crawler_index(tuple(extra))
    found = texts.str.extract_many(list(index.literals), overlapping=True).to_list()
    hits: list[set[int]] = [{i for lit in row for i in index.literals[lit]} for row in found]
    if index.regexes:
        scans = pl.DataFrame({"t": texts}).select(
            pl.col("t").str.contains(p, strict=False).alias(str(k))
            for k, (_, p) in enumerate(index.regexes)
        )
        for k, (entry_id, pattern) in enumerate(index.regexes):
            col = scans[str(k)]
            if col.null_count() == len(col) and len(col):  # Rust refused it: use Python
                col = regex_contains(texts, pattern)
            for row in np.flatnonzero(col.fill_null(False).to_numpy()):
                hits[row].add(entry_id)
    names: list[str | None] = []
    # Few distinct tag sets: build each list once and gather, not 20,000 nested lists.
    tag_sets: dict[tuple[str, ...], int] = {(): 0}
    tag_ids: list[int] = []
    for text, ids in zip(texts.to_list(), hits, strict=True):
        union = {t for i in ids for t in index.entries[i].tags}
        tag_ids.append(tag_sets.setdefault(tuple(sorted(union, key=_tag_rank)), len(tag_sets)))
        names.append(_crawler_name(text, ids, index) if ids else None)
    tags = pl.Series([list(t) for t in tag_sets], dtype=pl.List(pl.String))
    return pl.DataFrame(
        {
            "known_crawler": pl.Series([bool(ids) for ids in hits], dtype=pl.Boolean),
            "crawler_name": pl.Series(names, dtype=pl.String),
            "crawler_tags": tags.gather(pl.Series(tag_ids, dtype=pl.UInt32)),
        }
    )


def _crawler_name(text: str, ids: set[int], index: _CrawlerIndex) -> str:
    """Name after the most specific entry: a crawler over the library it is built on, then
    the leftmost match (the product token comes first), then the longest."""
    best: tuple[bool, int, int, int] | None = None
    name = ""
    for i in ids:
        entry = index.entries[i]
        if entry.literal is not None:
            start, matched = text.find(entry.literal), entry.literal
        else:
            m = _compiled(entry.pattern).search(text)
            start, matched = (m.start(), m.group(0)) if m else (len(text), entry.pattern)
        key = (entry.generic, start, -len(matched), i)
        if best is None or key < best:
            best, name = key, matched
    return name.strip(" ^$/\\;:,.+()[]") or name


# --- ua-parser -------------------------------------------------------------------------------


class ParsedAgent(NamedTuple):
    """What ua-parser and user-agents say about one agent string."""

    family: str | None
    major: int | None
    os: str | None
    device: str | None  # desktop | mobile | tablet | bot | other (parser view)
    is_bot: bool


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    max_size: int


class _ParseCache:
    """LRU of parsed agents, shared by every call in the process."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.data: OrderedDict[str, ParsedAgent] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> ParsedAgent | None:
        value = self.data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
            self.data.move_to_end(key)
        return value

    def put(self, key: str, value: ParsedAgent) -> None:
        self.data[key] = value
        if len(self.data) > self.max_size:
            self.data.popitem(last=False)


_CACHE = _ParseCache(PARSE_CACHE_SIZE)
_EMPTY = ParsedAgent(None, None, None, None, False)


def agent_cache_info() -> CacheInfo:
    return CacheInfo(_CACHE.hits, _CACHE.misses, len(_CACHE.data), _CACHE.max_size)


def clear_agent_cache() -> None:
    global _CACHE
    _CACHE = _ParseCache(PARSE_CACHE_SIZE)


def _parse_cached(texts: list[str]) -> list[ParsedAgent]:
    out: list[ParsedAgent | None] = [_EMPTY if not t else _CACHE.get(t) for t in texts]
    todo = sorted({t for t, p in zip(texts, out, strict=True) if p is None})
    if todo:
        fresh = dict(zip(todo, parse_agents(todo), strict=True))
        for key, value in fresh.items():
            _CACHE.put(key, value)
        out = [fresh[t] if p is None else p for t, p in zip(texts, out, strict=True)]
    return [p for p in out if p is not None]


def parse_agents(texts: Sequence[str]) -> list[ParsedAgent]:
    """Parse distinct, non-empty agent strings exactly as ua-parser's basic resolver would."""
    exact = [i for i, t in enumerate(texts) if t.isascii() and t.isprintable()]
    if len(exact) < VECTOR_MIN_AGENTS:
        exact = []  # compiling the Rust regexes would cost more than it saves
    results: list[_Resolved] = [(None, None, None)] * len(texts)
    for i, res in zip(exact, _resolve_fast([texts[i] for i in exact]), strict=True):
        results[i] = res
    rest = sorted(set(range(len(texts))) - set(exact))
    for i, res in zip(rest, _resolve_python([texts[i] for i in rest]), strict=True):
        results[i] = res
    # A summary depends on the parsed parts and on which of a few words the text holds, so
    # agents that share both share it: of 104,000 agents differing only in a device id, the
    # rules ran for 1,000 (1.5 -> 0.2 s).
    summaries: dict[tuple[Any, ...], ParsedAgent] = {}
    out: list[ParsedAgent] = []
    for t, res in zip(texts, results, strict=True):
        key = (*res, *[m in t for m in _RULE_WORDS])
        found = summaries.get(key)
        if found is None:
            found = summaries[key] = _summarise(t, *res)
        out.append(found)
    return out


#: Every word user-agents' is_bot, is_tablet, is_mobile and is_pc look for in the agent's
#: text (user-agents 2.2); the rest of what they read is the parsed parts.
_RULE_WORDS = (
    "Mobile Safari", "J2ME", "MIDP", "iPhone;", "Googlebot-Mobile", "NokiaBrowser", "Mobile",
    "Windows NT", "Silk", "Maemo", "Linux", "X11",
)


@cache
def _matchers() -> tuple[Matchers, tuple[list[str], list[str], list[str]]]:
    """ua-parser's matchers, and their regexes rewritten for Rust on ASCII input."""
    # Lazy matchers compile a regex on first use: the scans below start at the match the
    # Polars pre-scan found, so most of the 1,300 are never compiled in Python.
    matchers = load_lazy_builtins()
    ua, os_, device = matchers
    rust = (
        [_asciify(m.regex) for m in ua],
        [_asciify(m.regex) for m in os_],
        [("(?i)" if m.flags & re.IGNORECASE else "") + _asciify(m.regex) for m in device],
    )
    return matchers, rust


_OUTSIDE = {
    "w": "[0-9A-Za-z_]",
    "W": "[^0-9A-Za-z_]",
    "d": "[0-9]",
    "D": "[^0-9]",
    "s": "[ \\t\\n\\r\\f\\v]",
    "S": "[^ \\t\\n\\r\\f\\v]",
    "b": "(?-u:\\b)",
}
_INSIDE = {"w": "0-9A-Za-z_", "d": "0-9", "s": " \\t\\n\\r\\f\\v"}


def _asciify(pattern: str) -> str:
    r"""Spell Unicode-aware ``\w \d \s \b`` as ASCII classes.

    Identical on ASCII text, and it keeps Rust's lazy DFA small: ua-parser's catch-all bot
    regex takes 3.8 s per 20,000 agents with Unicode ``\w`` and 0.2 s with ASCII.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            esc = pattern[i + 1]
            table = _INSIDE if in_class else _OUTSIDE
            out.append(table.get(esc, pattern[i : i + 2]))
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            i += 1
            # "[]...]" and "[^]...]" start with a literal "]".
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("\\]")
                i += 1
            continue
        if ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def _first_matches(texts: pl.Series, patterns: list[str]) -> np.ndarray:
    """Index of the first pattern each text matches (-1: none), like a linear scan, but each
    block of patterns is one parallel Polars select over the texts still unresolved."""
    n = len(texts)
    first = np.full(n, -1, dtype=np.int64)
    todo = pl.DataFrame({"row": np.arange(n, dtype=np.int64), "t": texts})
    for start in range(0, len(patterns), _BLOCK):
        if todo.is_empty():
            break
        block = patterns[start : start + _BLOCK]
        hit = todo.select(
            pl.col("t").str.contains(p).alias(str(k)) for k, p in enumerate(block)
        ).to_numpy()
        matched = hit.any(axis=1)
        if matched.any():
            first[todo["row"].to_numpy()[matched]] = start + hit[matched].argmax(axis=1)
            todo = todo.filter(pl.Series(~matched))
    return first


_Resolved = tuple[UserAgent | None, OS | None, Device | None]
T = TypeVar("T")


def _resolve_fast(texts: list[str]) -> list[_Resolved]:
    if not texts:
        return []
    matchers, rust = _matchers()
    series = pl.Series(texts, dtype=pl.String)
    firsts = [_first_matches(series, patterns) for patterns in rust]
    ua, os_, device = matchers
    results: dict[tuple[int, int, tuple[str | None, ...]], Any] = {}
    return [
        (
            _first_result(ua, 0, text, int(firsts[0][row]), results),
            _first_result(os_, 1, text, int(firsts[1][row]), results),
            _first_result(device, 2, text, int(firsts[2][row]), results),
        )
        for row, text in enumerate(texts)
    ]


def _first_result(
    matchers: Sequence[Matcher[T]], kind: int, text: str, start: int,
    results: dict[tuple[int, int, tuple[str | None, ...]], Any],
) -> T | None:
    """``_scan`` from the matcher the pre-scan found, its result shared between agents.

    A matcher's result is its templates filled from its match groups (ua-parser's
    ``replacer`` reads groups 1-9, never the whole match), so agents that differ only
    outside the groups get the same result (one browser result for every device model, one
    device result for every browser version): it is built once per (matcher, groups), where
    filling the templates (``re.sub`` per field) was a third of the Python scan. Anything
    unusual (no compiled pattern, no match, a matcher that raises) takes the plain scan."""
    if start < 0:
        return None
    pattern = getattr(matchers[start], "pattern", None)
    found = pattern.search(text) if isinstance(pattern, re.Pattern) else None
    if found is None:
        return _scan(matchers, text, start)
    key = (kind, start, found.groups())
    if key in results:
        return cast("T", results[key])
    try:
        result = matchers[start](text)
    except ValueError:
        result = None
    if result is None:  # as _scan goes on past a matcher that fails
        return _scan(matchers, text, start + 1)
    results[key] = result
    return result


def _scan(matchers: Sequence[Matcher[T]], text: str, start: int = 0) -> T | None:
    """ua-parser's linear scan from ``start`` (-1: nothing matches); Python is the reference,
    so should the Rust pre-scan ever be wrong the scan simply goes on. A matcher that raises on
    odd input counts as no match rather than failing the whole batch."""
    if start < 0:
        return None
    for matcher in matchers[start:]:
        try:
            result = matcher(text)
        except ValueError:
            continue
        if result is not None:
            return result
    return None


def _resolve_python(texts: list[str]) -> list[_Resolved]:
    if len(texts) < PARALLEL_MIN_PYTHON_AGENTS:
        return _resolve_basic(texts)
    half = len(texts) // 2
    # spawn, not fork: forking a process that runs Polars' thread pool can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        other = pool.submit(_resolve_basic, texts[half:])
        mine = _resolve_basic(texts[:half])
        try:
            return mine + other.result()
        except (BrokenProcessPool, OSError):
            # A helper process is an optimisation: if the platform cannot start one (frozen
            # app, no importable __main__), finish here rather than fail the batch.
            return mine + _resolve_basic(texts[half:])


def _resolve_basic(texts: list[str]) -> list[_Resolved]:
    """ua-parser's own linear scan in Python: the reference the fast path must equal."""
    ua, os_, device = _matchers()[0]
    return [(_scan(ua, text), _scan(os_, text), _scan(device, text)) for text in texts]


def _summarise(text: str, ua: UserAgent | None, os_: OS | None, dev: Device | None) -> ParsedAgent:
    """Apply user-agents' rules (is_bot, is_mobile, is_tablet, is_pc) to a ua-parser result."""
    rules = _user_agents()
    flags = rules.UserAgent.__new__(rules.UserAgent)  # skip __init__: it would parse again, uncached
    flags.ua_string = text
    flags.browser = rules.parse_browser(
        ua.family if ua else "Other", *((ua.major, ua.minor, ua.patch) if ua else ())
    )
    flags.os = rules.parse_operating_system(
        os_.family if os_ else "Other",
        *((os_.major, os_.minor, os_.patch, os_.patch_minor) if os_ else ()),
    )
    flags.device = rules.parse_device(
        dev.family if dev else "Other", dev.brand if dev else None, dev.model if dev else None
    )
    if flags.is_bot:
        device = "bot"
    elif flags.is_tablet:
        device = "tablet"
    elif flags.is_mobile:
        device = "mobile"
    elif flags.is_pc:
        device = "desktop"
    else:
        device = "other"
    major = ua.major if ua else None
    return ParsedAgent(
        family=ua.family if ua else "Other",
        major=int(major) if major and major.isdigit() and len(major) < 10 else None,
        os=os_.family if os_ else "Other",
        device=device,
        is_bot=bool(flags.is_bot),
    )
