"""Who visits the shop, from where, and when: the cast of a simulation and their episodes.

Planning is cheap and happens once: it allocates addresses and agents, then schedules
*episodes* (a person's browsing session, a scraper's job, a crawler's hour of crawling, a price
poller's round). Episodes are rows of numbers: a start, a length and the parameters the
generators in ``humans.py`` and ``bots.py`` expand into requests one hour at a time, which keeps
memory bounded however long the simulated period is.

Long-running clients (monitors, crawlers, the slow browser crawler) are cut into hourly
episodes, so no single episode outlives the hour it starts in by much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from botguard.simulate.addresses import AddressBook
from botguard.simulate.agents import (
    OFFICE_PREFETCH,
    AgentPools,
    agent_pools,
    chrome_build,
    chrome_major,
)
from botguard.simulate.events import NO_REFERER
from botguard.simulate.kinds import HUMAN_MIX, KINDS, kind_counts
from botguard.simulate.shop import EMBED_REFERERS, Shop

HOUR_MS = 3_600_000
HTTP11, HTTP2 = 0, 1
PROTOCOLS = ("HTTP/1.1", "HTTP/2.0")

#: People's visits by local hour: a quiet night, a midday plateau, an evening peak.
HUMAN_BY_HOUR = (0.30, 0.18, 0.11, 0.08, 0.07, 0.09, 0.17, 0.32, 0.48, 0.58, 0.64, 0.70,
                 0.76, 0.74, 0.70, 0.70, 0.74, 0.80, 0.90, 1.00, 1.00, 0.92, 0.74, 0.50)
#: Office gateways: working hours only.
OFFICE_BY_HOUR = (0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.04, 0.20, 0.70, 1.00, 1.00, 0.90,
                  0.80, 0.90, 1.00, 0.95, 0.80, 0.50, 0.15, 0.05, 0.04, 0.03, 0.02, 0.02)
#: Sessions per person per hour (every person visits at least once), by visitor style.
HUMAN_SESSIONS_PER_H = 0.06
#: How people behave, one style per person: the individual human kinds, and a draw from
#: ``STYLE_MIX`` for each person behind a carrier NAT or on a VPN.
STYLE_HUMAN, STYLE_BOUNCER, STYLE_RETURNING, STYLE_IN_APP, STYLE_HOTLINK = range(5)
STYLE_OF_KIND = {"human": STYLE_HUMAN, "bouncer": STYLE_BOUNCER, "returning": STYLE_RETURNING,
                 "in_app": STYLE_IN_APP, "hotlink": STYLE_HOTLINK}
STYLE_MIX = np.array([HUMAN_MIX[k] for k in STYLE_OF_KIND]) / sum(HUMAN_MIX.values())
_SESSIONS_PER_H = (HUMAN_SESSIONS_PER_H, 0.03, 0.10, 0.03, 0.02)
#: Share of people on devices that stopped updating years ago.
OLD_BROWSER_SHARE = 0.04
#: Share of people whose privacy settings or extensions send no referer at all.
NO_REFERER_SHARE = 0.015
#: Audience time zones (UTC offset in hours) a shop may serve.
AUDIENCE_TZ = (1, 0, -5, 2, 9)

Table = dict[str, np.ndarray]

_WALK_DEFAULTS: dict[str, tuple[type[np.generic], float | int | bool]] = {
    "src": (np.int32, 0), "t0": (np.int64, 0), "n": (np.int32, 0),
    "walk": (np.int16, 0), "pos0": (np.int64, 0), "stride": (np.int64, 1),
    "gap_ms": (np.float64, 1000.0), "sigma": (np.float64, 0.5),
    "p429": (np.float64, 0.0), "p304": (np.float64, 0.0),
    "ua0": (np.int32, 0), "ua_n": (np.int32, 1), "ua_block": (np.int32, 1),
    "ref_mode": (np.int8, 0), "ref": (np.int32, NO_REFERER),
    "assets": (np.int8, 0), "head": (np.bool_, False), "robots": (np.bool_, False),
    "p_alt": (np.float64, 0.0), "alt_walk": (np.int16, 0),
}
REF_NONE, REF_CHAIN, REF_FIXED = 0, 1, 2

#: A session of pages (``single == 0``, see ``humans.py``) or one stray request.
_SESSION_DEFAULTS: dict[str, tuple[type[np.generic], float | int | bool]] = {
    "src": (np.int32, 0), "ua": (np.int32, 0), "t0": (np.int64, 0), "entry": (np.int8, 0),
    "cache": (np.int8, 0), "think_s": (np.float64, 15.0),
    # 0: as many pages as the walk through the shop takes; else at most / at least this many
    "max_pages": (np.int16, 0), "min_pages": (np.int16, 0),
    "ref0": (np.int32, -2), "strip_ref": (np.bool_, False),
    "single": (np.int8, 0), "extra": (np.bool_, False), "robots": (np.bool_, False),
}
ENTRY_DIRECT, ENTRY_SEARCH, ENTRY_SOCIAL = 0, 1, 2
#: Landing referer taken from the entry (search engine, social site, none) unless ``ref0``.
REF_BY_ENTRY = -2
#: Browser cache: empty (everything 200), fresh (max-age: little is asked at all), stale
#: (everything revalidated: 304s), or no assets at all (left at once, prefetch, data saver).
CACHE_COLD, CACHE_WARM, CACHE_REVALIDATE, CACHE_NONE = 0, 1, 2, 3
#: One-request sessions: a hotlinked image, a bare favicon, robots.txt, a link preview.
SINGLE_IMAGE, SINGLE_FAVICON, SINGLE_ROBOTS, SINGLE_PREVIEW = 1, 2, 3, 4

#: Link-preview services: (share, address world, IPv6 share, addresses per service,
#: fetches per hour per service, chance of fetching the og:image, of robots.txt first,
#: most fetches per address or 0). WhatsApp and iMessage fetch from the sharer's phone.
_PREVIEW_SERVICES: dict[str, tuple[float, str, float, tuple[int, int], float, float, float,
                                   int]] = {
    "facebook": (0.24, "facebook", 0.6, (2, 8), 0.5, 0.9, 0.0, 0),
    "twitter": (0.10, "twitter", 0.0, (1, 4), 0.2, 0.8, 0.5, 0),
    "slack": (0.12, "cloud", 0.0, (1, 4), 0.3, 0.6, 0.0, 0),
    "whatsapp": (0.16, "residential", 0.3, (1, 5), 0.1, 0.9, 0.0, 2),
    "telegram": (0.07, "telegram", 0.0, (1, 3), 0.15, 0.7, 0.0, 0),
    "discord": (0.08, "gcp", 0.0, (1, 3), 0.2, 0.7, 0.0, 0),
    "linkedin": (0.05, "linkedin", 0.0, (1, 2), 0.1, 0.5, 0.3, 0),
    "imessage": (0.05, "residential", 0.2, (1, 4), 0.08, 0.5, 0.0, 2),
    "feed": (0.13, "cloud", 0.0, (1, 1), 0.0, 0.0, 0.0, 0),  # polls the feed instead
}


@dataclass
class Plan:
    """The cast and schedule of one simulation; episode tables are sorted by ``t0``."""

    shop: Shop
    agents: list[str]
    addresses: list[str]
    address_kind: list[str]
    address_order: list[tuple[int, int]]  # sort key of each address (IPv4 first, numeric)
    uptimerobot: list[str]
    src_addr: np.ndarray
    src_proto: np.ndarray
    sessions: Table
    walks: Table
    actors_by_kind: dict[str, int]
    duration_ms: int


def _table(defaults: dict[str, tuple[type[np.generic], float | int | bool]], rows: int,
           **columns: object) -> Table:
    unknown = set(columns) - set(defaults)
    if unknown:
        raise TypeError(f"unknown episode columns {sorted(unknown)}")
    out = {}
    for name, (dtype, default) in defaults.items():
        value = columns.get(name, default)
        out[name] = np.broadcast_to(np.asarray(value, dtype=dtype), (rows,)).copy()
    return out


def _concat(tables: list[Table], defaults: dict[str, tuple[type[np.generic], float | int | bool]]
            ) -> Table:
    if not tables:
        return _table(defaults, 0)
    merged = {k: np.concatenate([t[k] for t in tables]) for k in defaults}
    order = np.argsort(merged["t0"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


@dataclass
class _Planner:
    """Accumulates addresses, agents, sources and episodes while each kind is planned."""

    rng: np.random.Generator
    shop: Shop
    pools: AgentPools
    duration_ms: int
    start: datetime
    book: AddressBook = field(init=False)
    agents: list[str] = field(default_factory=list)
    src_addr: list[np.ndarray] = field(default_factory=list)
    src_proto: list[np.ndarray] = field(default_factory=list)
    n_src: int = 0
    sessions: list[Table] = field(default_factory=list)
    walks: list[Table] = field(default_factory=list)
    pool_start: dict[str, int] = field(default_factory=dict)
    pool_size: dict[str, int] = field(default_factory=dict)
    swarm_agents: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.book = AddressBook(self.rng)
        self.walk_ids = {name: i for i, name in enumerate(self.shop.walk_start)}
        pools = self.pools
        # contiguous pools, so an episode can name one as (first index, size)
        for name, strings in (
            ("browsers", pools.browsers), ("stale", pools.stale_browsers),
            ("googlebot", pools.googlebot), ("bingbot", pools.bingbot),
            ("monitor", pools.monitor), ("libraries", pools.libraries),
            ("headless", pools.headless), ("scanners", pools.scanners),
            ("poller", pools.poller_custom), ("old", pools.old_browsers),
            ("corporate", pools.corporate), ("in_app", pools.in_app),
            *((f"preview:{k}", v) for k, v in pools.preview.items()),
        ):
            self.pool_start[name] = len(self.agents)
            self.pool_size[name] = len(strings)
            self.agents.extend(strings)

    # --- helpers -------------------------------------------------------------------------

    @property
    def hours(self) -> float:
        return self.duration_ms / HOUR_MS

    def sources(self, addr: np.ndarray, proto: np.ndarray | list[int] | int) -> np.ndarray:
        addr = np.asarray(addr, dtype=np.int32)
        self.src_addr.append(addr)
        self.src_proto.append(np.broadcast_to(np.asarray(proto, dtype=np.int8), addr.shape).copy())
        ids = np.arange(self.n_src, self.n_src + addr.size, dtype=np.int32)
        self.n_src += addr.size
        return ids

    def pool(self, name: str, pick: np.ndarray) -> np.ndarray:
        """Global agent indices of ``pick`` (indices within the named pool)."""
        return (self.pool_start[name] + pick).astype(np.int32)

    def pick_agent(self, name: str, n: int) -> np.ndarray:
        """``n`` agents drawn uniformly from the named pool."""
        return self.pool(name, self.rng.integers(0, self.pool_size[name], n))

    def browser_agents(self, n: int, stale_share: float) -> np.ndarray:
        """Agents of bots that pose as browsers: current market mix or outdated copies."""
        current = self.pool("browsers", self.rng.choice(len(self.pools.browsers), n,
                                                        p=self.pools.browsers_p))
        stale = self.pick_agent("stale", n)
        return np.where(self.rng.random(n) < stale_share, stale, current).astype(np.int32)

    def addresses(self, kind: str, n: int, cloud_share: float, v6_share: float) -> np.ndarray:
        in_cloud = self.rng.random(n) < cloud_share
        addr = np.empty(n, dtype=np.int32)
        addr[in_cloud] = self.book.take("cloud", kind, int(in_cloud.sum()), v6_share)
        addr[~in_cloud] = self.book.take("residential", kind, int((~in_cloud).sum()), v6_share)
        return addr

    def coprime_strides(self, n: int, length: int) -> np.ndarray:
        """Strides that visit every position of a walk of ``length`` once, in a scrambled order."""
        if length <= 2:
            return np.ones(n, dtype=np.int64)
        strides = self.rng.integers(length // 5 + 1, length, n)
        bad = np.gcd(strides, length) != 1
        while bad.any():
            strides[bad] = self.rng.integers(length // 5 + 1, length, int(bad.sum()))
            bad = np.gcd(strides, length) != 1
        return strides.astype(np.int64)

    def walk_id(self, names: np.ndarray | list[str]) -> np.ndarray:
        return np.array([self.walk_ids[str(n)] for n in names], dtype=np.int16)

    def walk_len(self, ids: np.ndarray) -> np.ndarray:
        lengths = np.array(list(self.shop.walk_len.values()), dtype=np.int64)
        return np.asarray(lengths[ids])

    def job_starts(self, src: np.ndarray, per_hour: float, cron_share: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Start times of jobs: at least one per source, more at ``per_hour``."""
        counts = np.maximum(1, self.rng.poisson(per_hour * self.hours, src.size))
        job_src = np.repeat(src, counts)
        t0 = self.rng.integers(0, max(1, self.duration_ms), job_src.size)
        # cron jobs start on the hour or half hour (plus the seconds a scheduler takes)
        cron = self.rng.random(job_src.size) < cron_share
        aligned = (t0 // 1_800_000) * 1_800_000 + self.rng.integers(0, 4000, job_src.size)
        t0 = np.where(cron & (aligned < self.duration_ms), aligned, t0)
        return job_src, t0.astype(np.int64)

    def times_of_day(self, n: int, by_hour: tuple[float, ...], tz: int) -> np.ndarray:
        """``n`` times (ms) in the simulated period, denser when ``by_hour`` is high locally."""
        minutes = max(1, int(np.ceil(self.duration_ms / 60_000)))
        local_h = (self.start.hour + self.start.minute / 60 + tz
                   + np.arange(minutes) / 60.0) % 24
        lo = np.floor(local_h).astype(int)
        frac = local_h - lo
        weights = np.asarray(by_hour)[lo] * (1 - frac) + np.asarray(by_hour)[(lo + 1) % 24] * frac
        cdf = np.cumsum(weights)
        minute = np.searchsorted(cdf, self.rng.random(n) * cdf[-1])
        t = (minute + self.rng.random(n)) * 60_000
        return np.asarray(np.minimum(t, self.duration_ms - 1), dtype=np.int64)

    def walk_episodes(self, rows: int, **columns: object) -> None:
        table = _table(_WALK_DEFAULTS, rows, **columns)
        # every episode starts inside the period, so every planned client appears
        table["t0"] = np.minimum(table["t0"], self.duration_ms - 1)
        self.walks.append(table)

    # --- people --------------------------------------------------------------------------

    def person_agents(self, n: int, corporate_share: float = 0.0) -> np.ndarray:
        """Agents of ``n`` people: the market mix, a few old devices, corporate oddities."""
        pools, rng = self.pools, self.rng
        current = self.pool("browsers", rng.choice(len(pools.browsers), n, p=pools.browsers_p))
        old = self.pool("old", rng.choice(len(pools.old_browsers), n, p=pools.old_browsers_p))
        corp = self.pool("corporate", rng.choice(len(pools.corporate), n, p=pools.corporate_p))
        u = rng.random(n)
        return np.where(u < corporate_share, corp,
                        np.where(u < corporate_share + OLD_BROWSER_SHARE, old, current))

    def people(self, addr: np.ndarray, agents: np.ndarray, style: np.ndarray, tz: int,
               by_hour: tuple[float, ...] = HUMAN_BY_HOUR, strip_ref: np.ndarray | bool = False,
               p_http2: float = 0.92) -> None:
        """Sessions of people (one agent and one style each) browsing from ``addr``."""
        rng, shop = self.rng, self.shop
        n_people = addr.size
        src = self.sources(addr, np.where(rng.random(n_people) < p_http2, HTTP2, HTTP11))
        in_app = style == STYLE_IN_APP
        agents = agents.copy()
        app = rng.choice(len(self.pools.in_app), n_people, p=self.pools.in_app_p)
        agents[in_app] = self.pool("in_app", app[in_app])
        app_ref = np.array([shop.referer_code(r) for r in self.pools.in_app_referer],
                           dtype=np.int32)[app]
        rate = np.asarray(_SESSIONS_PER_H)[style]
        per = np.maximum(1, rng.poisson(rate * self.hours))
        # per person: pace, a long read, how a stray request looks, a stripped referer
        think = 15.0 * np.exp(0.45 * rng.standard_normal(n_people))
        long_read = (style == STYLE_HUMAN) & (rng.random(n_people) < 0.06)
        stray = rng.choice(4, n_people, p=[0.55, 0.20, 0.15, 0.10])  # image, embed, icon, robots
        embed = rng.integers(0, len(EMBED_REFERERS), n_people)
        strip = np.broadcast_to(np.asarray(strip_ref), (n_people,)) | (
            rng.random(n_people) < NO_REFERER_SHARE)
        prefetch = agents == self.pool("corporate", np.array([OFFICE_PREFETCH]))[0]

        p = np.repeat(np.arange(n_people), per)  # person of each session
        n = p.size
        first = np.ones(n, dtype=bool)
        first[1:] = p[1:] != p[:-1]
        st = style[p]
        u, u2 = rng.random(n), rng.random(n)
        entry = np.select(
            [st == STYLE_BOUNCER, st == STYLE_RETURNING],
            [rng.choice(3, n, p=[0.25, 0.55, 0.20]), rng.choice(3, n, p=[0.55, 0.35, 0.10])],
            rng.choice(3, n, p=[0.38, 0.48, 0.14]))
        entry[st == STYLE_IN_APP] = ENTRY_SOCIAL
        ref0 = np.full(n, REF_BY_ENTRY, dtype=np.int32)
        ref0[st == STYLE_IN_APP] = np.where(u2 < 0.8, app_ref[p], NO_REFERER)[st == STYLE_IN_APP]

        cache = np.full(n, CACHE_COLD, dtype=np.int8)
        later = ~first
        # a cache that still holds the theme: fresh (few requests) or revalidated (304s)
        warm = np.where(u2 < 0.75, CACHE_WARM, CACHE_REVALIDATE).astype(np.int8)
        cache[later & (u < 0.8)] = warm[later & (u < 0.8)]
        ret = st == STYLE_RETURNING
        cache[ret] = np.where(u[ret] < 0.05, CACHE_COLD, warm[ret])

        max_pages = np.zeros(n, dtype=np.int16)
        min_pages = np.zeros(n, dtype=np.int16)
        length = rng.integers(20, 61, n)
        lr = long_read[p] & first
        max_pages[lr] = min_pages[lr] = length[lr]
        b = st == STYLE_BOUNCER
        bounce_len = rng.choice([1, 2, 3], n, p=[0.65, 0.20, 0.15])
        max_pages[b] = bounce_len[b]
        cache[b & first & (bounce_len == 1) & (u < 0.4)] = CACHE_NONE
        cache[b & later & (u < 0.3)] = CACHE_NONE
        max_pages[ret & (rng.random(n) < 0.3)] = 1
        ia = st == STYLE_IN_APP
        max_pages[ia] = np.where(u[ia] < 0.45, 1, rng.integers(2, 7, int(ia.sum())))

        single = np.zeros(n, dtype=np.int8)
        hot = st == STYLE_HOTLINK
        kind = stray[p]
        single[hot & (kind == 0)] = SINGLE_IMAGE
        single[hot & (kind == 2)] = SINGLE_FAVICON
        single[hot & (kind == 3)] = SINGLE_ROBOTS
        emb = hot & (kind == 1)  # a product page shown in someone's iframe or app preview
        max_pages[emb] = 1
        entry[emb] = ENTRY_SOCIAL
        embed_ref = np.array([shop.referer_code(r) for r in EMBED_REFERERS], dtype=np.int32)
        img = hot & (kind == 0)
        ref0[emb | img] = np.where(u2 < 0.7, embed_ref[embed[p]], NO_REFERER)[emb | img]

        office = prefetch[p]  # Outlook fetching a link itself: one page, nothing else
        max_pages[office], cache[office] = 1, CACHE_NONE

        # a person's first visit (the one with the empty cache) is their earliest
        t0 = self.times_of_day(n, by_hour, tz)
        t0 = t0[np.lexsort((t0, p))]
        self.sessions.append(_table(
            _SESSION_DEFAULTS, n, src=src[p], ua=agents[p], t0=t0, entry=entry, cache=cache,
            think_s=think[p], max_pages=max_pages, min_pages=min_pages, ref0=ref0,
            strip_ref=strip[p], single=single, extra=u < 0.2,
        ))

    def humans(self, counts: dict[str, int], tz: int) -> None:
        for kind, style in STYLE_OF_KIND.items():
            n = counts[kind]
            addr = self.book.take("residential", kind, n, 0.10)
            self.people(addr, self.person_agents(n, 0.01), np.full(n, style), tz)
        n = counts["vpn"]
        self.people(self.book.take("cloud", "vpn", n, 0.05), self.person_agents(n, 0.02),
                    self.rng.choice(5, n, p=STYLE_MIX), tz)
        for _ in range(counts["shared_nat"]):
            crowd = int(self.rng.integers(10, 41))
            # an office behind its corporate proxy, or a mobile carrier's NAT
            office = self.rng.random() < 0.4
            strip = office and self.rng.random() < 0.3  # some proxies drop every referer
            address = self.book.take("nat", "shared_nat", 1)
            # different people behind one gateway have different agents
            picks = self.rng.choice(len(self.pools.browsers), crowd, replace=False,
                                    p=self.pools.browsers_p)
            agents = self.pool("browsers", picks)
            odd = self.person_agents(crowd, 0.35 if office else 0.0)
            agents = np.where(self.rng.random(crowd) < (0.4 if office else 0.05), odd, agents)
            self.people(np.repeat(address, crowd), agents, self.rng.choice(5, crowd, p=STYLE_MIX),
                        tz, OFFICE_BY_HOUR if office else HUMAN_BY_HOUR, strip_ref=strip,
                        p_http2=0.3 if office else 0.92)

    # --- link previews and feed readers --------------------------------------------------

    def previews(self, n: int, tz: int) -> None:
        """Declared fetchers that show a shared link: one page (and its picture) now and then."""
        if n == 0:
            return
        rng = self.rng
        names = list(_PREVIEW_SERVICES)
        shares = np.array([v[0] for v in _PREVIEW_SERVICES.values()])
        for name in rng.choice(names, n, p=shares / shares.sum()).tolist():
            _, world, v6, (lo, hi), per_h, p_image, p_robots, cap = _PREVIEW_SERVICES[name]
            k = int(rng.integers(lo, hi + 1))
            addr = self.book.take(world, "preview", k, v6)
            src = self.sources(addr, np.where(rng.random(k) < 0.8, HTTP11, HTTP2))
            agents = self.pick_agent(f"preview:{name}", k)
            if name == "feed":
                self.feed_reader(src, agents)
                continue
            count = np.maximum(1, rng.poisson(per_h / k * self.hours, k))
            if cap:
                count = np.minimum(count, cap)
            i = np.repeat(np.arange(k), count)
            m = i.size
            self.sessions.append(_table(
                _SESSION_DEFAULTS, m, src=src[i], ua=agents[i],
                t0=self.times_of_day(m, HUMAN_BY_HOUR, tz), single=SINGLE_PREVIEW,
                extra=rng.random(m) < p_image, robots=rng.random(m) < p_robots,
            ))

    def feed_reader(self, src: np.ndarray, agents: np.ndarray) -> None:
        """A feed reader's poller: the feed every one to three hours, mostly 304."""
        rng = self.rng
        period = rng.choice([60, 90, 120, 180], src.size) * 60_000
        phase = rng.integers(0, period)
        rounds = np.maximum(1, -(-(self.duration_ms - phase) // period))
        r = np.repeat(np.arange(src.size), rounds)
        k = np.arange(r.size) - np.repeat(np.cumsum(rounds) - rounds, rounds)
        t0 = phase[r] + k * period[r] + rng.integers(0, 20_000, r.size)
        keep = t0 < self.duration_ms
        keep[np.cumsum(rounds) - rounds] = True  # every reader polls at least once
        self.walk_episodes(int(keep.sum()), src=src[r][keep], t0=t0[keep], n=1,
                           walk=self.walk_id(["feed"])[0], p304=0.7, ua0=agents[r][keep])

    # --- good bots -----------------------------------------------------------------------

    def hourly(self, src: np.ndarray, per_hour: np.ndarray) -> tuple[np.ndarray, ...]:
        """Hour-by-hour episodes of a steady process: (src, hour index, t0, count)."""
        n_hours = int(np.ceil(self.duration_ms / HOUR_MS))
        h_src = np.repeat(src, n_hours)
        hour = np.tile(np.arange(n_hours), src.size)
        t0 = hour.astype(np.int64) * HOUR_MS
        span = np.minimum(HOUR_MS, self.duration_ms - t0) / HOUR_MS
        # crawl demand drifts from hour to hour
        rate = np.repeat(per_hour, n_hours) * np.exp(0.5 * self.rng.standard_normal(h_src.size))
        count = self.rng.poisson(rate * span)
        first = hour == 0
        count[first] = np.maximum(count[first], 1)  # every crawler shows up
        keep = count > 0
        return h_src[keep], hour[keep], t0[keep], count[keep], span[keep]

    def crawler(self, kind: str, world: str, pool: str, n: int, median_per_h: float,
                robots_every_h: int, v6_share: float) -> None:
        if n == 0:
            return
        addr = self.book.take(world, kind, n, v6_share)
        src = self.sources(addr, np.where(self.rng.random(n) < 0.7, HTTP11, HTTP2))
        per_hour = np.clip(median_per_h * np.exp(0.6 * self.rng.standard_normal(n)), 4, 400)
        phase = self.rng.integers(0, robots_every_h, n)
        h_src, hour, t0, count, span = self.hourly(src, per_hour)
        robots = (hour % robots_every_h) == phase[h_src - src[0]]
        m = h_src.size
        crawl = self.walk_id(["crawl"])[0]
        self.walk_episodes(
            m, src=h_src, t0=t0 + self.rng.integers(0, 20_000, m), n=count + robots, walk=crawl,
            pos0=self.rng.integers(0, 1 << 30, m),
            stride=self.coprime_strides(m, self.shop.walk_len["crawl"]),
            # lognormal gaps average exp(sigma^2 / 2) times their median: keep the hour's rate
            gap_ms=span * HOUR_MS / (count + 1) / np.exp(0.9**2 / 2), sigma=0.9, p304=0.07,
            ua0=self.pool_start[pool], ua_n=2, ua_block=0, robots=robots,
            p_alt=0.01, alt_walk=self.walk_id(["sitemaps"])[0],
        )

    def monitors(self, n: int) -> None:
        if n == 0:
            return
        addr = self.book.take_listed("monitor", n)
        src = self.sources(addr, HTTP11)
        interval = self.rng.choice([60_000, 120_000, 180_000, 300_000], n)
        phase = self.rng.integers(0, interval)
        walk = self.walk_id(self.rng.choice(["home", "health"], n))
        head = self.rng.random(n) < 0.6  # UptimeRobot's default HTTP check is a HEAD
        n_hours = int(np.ceil(self.duration_ms / HOUR_MS))
        for h in range(n_hours):
            lo, hi = h * HOUR_MS, min((h + 1) * HOUR_MS, self.duration_ms)
            k0 = -(-(lo - phase) // interval)
            k1 = -(-(hi - phase) // interval)
            count = k1 - k0
            keep = count > 0
            self.walk_episodes(
                int(keep.sum()), src=src[keep], t0=(phase + k0 * interval)[keep], n=count[keep],
                walk=walk[keep], gap_ms=interval[keep], sigma=0.002,
                ua0=self.pool_start["monitor"], head=head[keep],
            )

    # --- bad bots ------------------------------------------------------------------------

    def walk_choice(self, n: int, options: dict[str, float]) -> np.ndarray:
        names = list(options)
        p = np.array(list(options.values()))
        if not self.shop_numeric_ids and "ids" in options:
            p[names.index("ids")] = 0.0
        return self.walk_id(self.rng.choice(names, n, p=p / p.sum()))

    @property
    def shop_numeric_ids(self) -> bool:
        return bool((~self.shop.exists).any())

    def jobs(self, src: np.ndarray, walk: np.ndarray, ordered: np.ndarray, per_hour: float,
             median_n: float, max_n: int, gap_ms: np.ndarray, sigma: float,
             cron_share: float = 0.0, **per_source: np.ndarray | float | int) -> None:
        """Bounded jobs of walking the site; ``per_source`` columns are indexed like ``src``."""
        if src.size == 0:
            return
        job_src, t0 = self.job_starts(src, per_hour, cron_share)
        m = job_src.size
        i = job_src - src[0]  # sources of one kind are allocated contiguously
        w = walk[i]
        length = self.walk_len(w)
        stride = np.where(ordered[i], 1, 0)
        random_order = stride == 0
        stride[random_order] = [int(self.coprime_strides(1, int(x))[0])
                                for x in length[random_order]]
        n = np.clip(median_n * np.exp(0.8 * self.rng.standard_normal(m)), 10, max_n).astype(int)
        extra = {k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in per_source.items()}
        robots = extra.get("robots", False)
        self.walk_episodes(
            m, src=job_src, t0=t0, n=n + np.asarray(robots, dtype=int), walk=w,
            pos0=self.rng.integers(0, 1 << 30, m), stride=stride, gap_ms=gap_ms[i], sigma=sigma,
            **extra,
        )

    def bad_bots(self, counts: dict[str, int]) -> None:
        rng = self.rng
        probes = self.walk_id(["probes"])[0]

        n = counts["library_scraper"]
        addr = self.addresses("library_scraper", n, cloud_share=0.75, v6_share=0.08)
        ua = self.pick_agent("libraries", n)
        names = [self.agents[u] for u in ua]
        src = self.sources(addr, [HTTP2 if "/2.0" in a else HTTP11 for a in names])
        walk = self.walk_choice(n, {"ids": 0.35, "listing": 0.3, "sitemap": 0.15,
                                    "products": 0.2})
        gap = np.clip(350 * np.exp(0.7 * rng.standard_normal(n)), 40, 3000)
        self.jobs(src, walk, self._ordered(walk), 0.05, 200, 3000, gap, 0.5,
                  cron_share=0.25, ua0=ua, p429=np.where(gap < 250, 0.15, 0.02),
                  robots=np.array(["Scrapy" in a for a in names]) | (rng.random(n) < 0.1))

        n = counts["browser_crawler_fast"]
        addr = self.addresses("browser_crawler_fast", n, cloud_share=0.7, v6_share=0.05)
        src = self.sources(addr, np.where(rng.random(n) < 0.6, HTTP11, HTTP2))
        walk = self.walk_choice(n, {"products": 0.5, "ids": 0.25, "listing": 0.25})
        self.jobs(src, walk, self._ordered(walk), 0.04, 250, 4000,
                  rng.uniform(500, 3000, n), 0.35, ua0=self.browser_agents(n, 0.5), p429=0.03)

        n = counts["ua_rotator"]
        addr = self.addresses("ua_rotator", n, cloud_share=0.7, v6_share=0.05)
        src = self.sources(addr, HTTP11)
        walk = self.walk_choice(n, {"products": 0.6, "listing": 0.4})
        google = self.shop.external_referer(0)
        self.jobs(src, walk, self._ordered(walk), 0.05, 150, 3000,
                  np.clip(3000 * np.exp(0.6 * rng.standard_normal(n)), 800, 9000), 0.6,
                  ua0=self.pool_start["browsers"],
                  ua_n=self.pool_size["browsers"] + self.pool_size["stale"],
                  ua_block=rng.integers(2, 7, n),
                  ref_mode=np.where(rng.random(n) < 0.4, REF_FIXED, REF_NONE), ref=int(google))

        n = counts["headless"]
        addr = self.addresses("headless", n, cloud_share=0.9, v6_share=0.05)
        ua = self.pick_agent("headless", n)
        src = self.sources(addr, [HTTP11 if "PhantomJS" in self.agents[u] else HTTP2 for u in ua])
        walk = self.walk_choice(n, {"listing": 0.4, "products": 0.4, "crawl": 0.2})
        self.jobs(src, walk, self._ordered(walk), 0.05, 60, 1500,
                  rng.uniform(2000, 8000, n), 0.4, ua0=ua, assets=rng.integers(2, 6, n),
                  ref_mode=REF_CHAIN)

        n = counts["fake_googlebot"]
        addr = self.addresses("fake_googlebot", n, cloud_share=1.0, v6_share=0.05)
        src = self.sources(addr, HTTP11)
        walk = self.walk_choice(n, {"sitemap": 0.3, "crawl": 0.4, "products": 0.3})
        self.jobs(src, walk, self._ordered(walk), 0.05, 150, 2500,
                  np.clip(1200 * np.exp(0.7 * rng.standard_normal(n)), 300, 4000), 0.5,
                  ua0=self.pick_agent("googlebot", n), robots=rng.random(n) < 0.5)

        n = counts["probe"]
        addr = self.addresses("probe", n, cloud_share=0.75, v6_share=0.05)
        src = self.sources(addr, HTTP11)
        walk = np.full(n, probes, dtype=np.int16)
        self.jobs(src, walk, rng.random(n) < 0.6, 0.05, 50, 400,
                  np.clip(400 * np.exp(0.8 * rng.standard_normal(n)), 60, 2000), 0.6,
                  ua0=self.pick_agent("scanners", n))

        self.slow_crawlers(counts["browser_crawler_slow"])
        self.price_pollers(counts["price_poller"])
        for _ in range(counts["swarm"]):
            self.swarm()

    def _ordered(self, walk: np.ndarray) -> np.ndarray:
        """Walks that are followed in their natural order (ids, listings, sitemap)."""
        return np.isin(walk, self.walk_id(["ids", "listing", "sitemap"]))

    def slow_crawlers(self, n: int) -> None:
        """One product every 20-90 s for hours, like clockwork, from one address."""
        if n == 0:
            return
        rng = self.rng
        addr = self.addresses("browser_crawler_slow", n, cloud_share=0.6, v6_share=0.05)
        src = self.sources(addr, np.where(rng.random(n) < 0.5, HTTP11, HTTP2))
        ua = self.browser_agents(n, 0.4)
        interval = rng.uniform(20_000, 90_000, n)
        walk = self.walk_choice(n, {"products": 0.6, "ids": 0.4})
        length = self.walk_len(walk)
        stride = np.where(self.walk_id(["ids"])[0] == walk, 1, 0)
        stride[stride == 0] = [int(self.coprime_strides(1, int(x))[0]) for x in length[stride == 0]]
        run_ms = np.clip(4 * HOUR_MS * np.exp(0.5 * rng.standard_normal(n)), 2 * HOUR_MS,
                         12 * HOUR_MS)
        begin = (rng.random(n) * np.maximum(0, self.duration_ms - run_ms)).astype(np.int64)
        end = np.minimum(begin + run_ms, self.duration_ms)
        pos_start = rng.integers(0, 1 << 30, n)
        n_hours = int(np.ceil(self.duration_ms / HOUR_MS))
        for h in range(n_hours):
            lo = np.maximum(begin, h * HOUR_MS)
            hi = np.minimum(end, (h + 1) * HOUR_MS)
            k0 = np.ceil((lo - begin) / interval).astype(np.int64)
            k1 = np.ceil((hi - begin) / interval).astype(np.int64)
            count = np.where(hi > lo, k1 - k0, 0)
            keep = count > 0
            self.walk_episodes(
                int(keep.sum()), src=src[keep], t0=(begin + k0 * interval)[keep].astype(np.int64),
                n=count[keep], walk=walk[keep], pos0=(pos_start + k0 * stride)[keep],
                stride=stride[keep], gap_ms=interval[keep], sigma=0.04, ua0=ua[keep],
            )

    def price_pollers(self, n: int) -> None:
        """Rounds over a fixed product set's price/stock endpoints, never the product page."""
        if n == 0:
            return
        rng = self.rng
        addr = self.addresses("price_poller", n, cloud_share=0.7, v6_share=0.05)
        src = self.sources(addr, HTTP11)
        ua = np.where(rng.random(n) < 0.6, self.pick_agent("poller", n),
                      self.browser_agents(n, 0.3))
        period = rng.choice([5, 10, 15, 30, 60], n, p=[0.1, 0.15, 0.25, 0.25, 0.25]) * 60_000
        # about 20 requests an hour: a short period watches few products, a long one many
        size = rng.integers(5, np.clip(20 * period // HOUR_MS, 5, 150) + 1)
        n_polls = self.shop.polls.shape[1]
        walk = self.walk_id([f"poll{k}" for k in rng.integers(0, n_polls, n)])
        length = self.walk_len(walk)
        stride = np.where(rng.random(n) < 0.5, 1, 0)
        stride[stride == 0] = [int(self.coprime_strides(1, int(x))[0]) for x in length[stride == 0]]
        pos0 = rng.integers(0, 1 << 30, n)
        phase = rng.integers(0, period)
        rounds = np.maximum(1, -(-(self.duration_ms - phase) // period))
        r_src = np.repeat(np.arange(n), rounds)
        r_k = np.arange(r_src.size) - np.repeat(np.cumsum(rounds) - rounds, rounds)
        t0 = phase[r_src] + r_k * period[r_src] + rng.integers(0, 3000, r_src.size)
        keep = t0 < self.duration_ms
        keep[np.cumsum(rounds) - rounds] = True  # a poller seen once is still a poller
        t0 = np.minimum(t0, self.duration_ms - 1)
        i = r_src[keep]
        self.walk_episodes(
            i.size, src=src[i], t0=t0[keep], n=size[i], walk=walk[i], pos0=pos0[i],
            stride=stride[i], gap_ms=rng.uniform(200, 2000, n)[i], sigma=0.3, ua0=ua[i],
        )

    def swarm_agent(self) -> int:
        """A full-version Chrome agent no other swarm uses: one campaign, one tool build."""
        chrome = chrome_major(self.start.date())
        while True:
            version = chrome_build(int(chrome - self.rng.integers(0, 20)),
                                   int(self.rng.integers(1, 220)))
            platform = self.rng.choice(["Windows NT 10.0; Win64; x64",
                                        "Macintosh; Intel Mac OS X 10_15_7", "X11; Linux x86_64"])
            agent = (f"Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) "
                     f"Chrome/{version} Safari/537.36")
            if agent not in self.swarm_agents:
                self.swarm_agents.add(agent)
                self.agents.append(agent)
                return len(self.agents) - 1

    def swarm(self) -> None:
        """Many residential addresses, one agent, each fetching its own slice of the catalogue."""
        rng = self.rng
        members = int(30 * np.exp(rng.uniform(0, np.log(200 / 30))) + 0.5)  # log-uniform
        length = self.shop.walk_len["products"]
        # 5-40 products each, never more than the catalogue holds in total
        slices = rng.integers(5, max(5, min(40, length // members)) + 1, members)
        first = np.cumsum(slices) - slices
        addr = self.book.take("residential", "swarm", members, 0.1)
        src = self.sources(addr, HTTP11 if rng.random() < 0.5 else HTTP2)
        ua = self.swarm_agent()
        stride = int(self.coprime_strides(1, length)[0])
        offset = int(rng.integers(0, length))
        span = min(self.duration_ms, int(6 * HOUR_MS * np.exp(0.5 * rng.standard_normal())))
        begin = int(rng.integers(0, max(1, self.duration_ms - span)))
        # slow, but every member finishes its slice inside the campaign (and the period)
        gap = np.minimum(rng.uniform(30_000, 120_000, members), span / (2 * (slices + 1)))
        t0 = begin + (rng.random(members) * (span - 2 * slices * gap)).astype(np.int64)
        self.walk_episodes(
            members, src=src, t0=t0, n=slices,
            walk=self.walk_id(["products"])[0], pos0=offset + first * stride, stride=stride,
            gap_ms=gap, sigma=0.3, ua0=ua,
        )


def make_plan(rng: np.random.Generator, shop: Shop, *, clients: int, duration_ms: int,
              start: datetime) -> Plan:
    """Allocate everyone and schedule every episode of the simulated period."""
    planner = _Planner(rng, shop, agent_pools(start.date()), duration_ms, start)
    counts = kind_counts(clients)
    tz = int(rng.choice(AUDIENCE_TZ))
    planner.humans(counts, tz)
    planner.crawler("googlebot", "googlebot", "googlebot", counts["googlebot"], 12, 6, 0.15)
    planner.crawler("bingbot", "bingbot", "bingbot", counts["bingbot"], 8, 2, 0.0)
    planner.monitors(counts["monitor"])
    planner.previews(counts["preview"], tz)
    planner.bad_bots(counts)
    return Plan(
        shop=shop,
        agents=planner.agents,
        addresses=planner.book.addresses,
        address_kind=planner.book.kinds,
        address_order=planner.book.order,
        uptimerobot=planner.book.uptimerobot,
        src_addr=np.concatenate(planner.src_addr) if planner.src_addr else np.empty(0, np.int32),
        src_proto=np.concatenate(planner.src_proto) if planner.src_proto else np.empty(0, np.int8),
        sessions=_concat(planner.sessions, _SESSION_DEFAULTS),
        walks=_concat(planner.walks, _WALK_DEFAULTS),
        actors_by_kind={k: counts[k] for k in KINDS},
        duration_ms=duration_ms,
    )

