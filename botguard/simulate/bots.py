"""Every bot, good or bad, as one vectorized expansion of walk episodes.

A bot episode says: from this source, starting at ``t0``, request ``n`` targets of a walk
(positions ``pos0, pos0 + stride, ...``) about ``gap_ms`` apart. The kinds differ only in those
numbers and a few switches, set in ``plan.py``:

* pacing: ``gap_ms`` and ``sigma`` (lognormal jitter; 0.002 for a monitor's clock, 0.9 for a
  search engine's irregular crawl);
* agents: fixed, rotated every ``ua_block`` requests through a pool, or drawn per request;
* referers: none, a fixed one, or a chain (each page names the previous one, as a headless
  browser clicking through does);
* extras: a ``robots.txt`` fetch first, sitemap fetches in between, assets after pages
  (headless browsers fetch css/js; scrapers do not), HEAD instead of GET, 304 and 429 answers.
"""

from __future__ import annotations

import numpy as np

from botguard.simulate.events import GET, HEAD, NO_REFERER, Events
from botguard.simulate.plan import REF_CHAIN, REF_FIXED, Table
from botguard.simulate.shop import Shop

_UA_SCRAMBLE = 7919  # a prime: consecutive rotation blocks get unrelated agents


def expand_walks(w: Table, shop: Shop, rng: np.random.Generator) -> Events:
    """All requests of the walk episodes in ``w``, unsorted."""
    n = w["n"].astype(np.int64)
    total = int(n.sum())
    if total == 0:
        return Events.empty()
    e = np.repeat(np.arange(n.size), n)
    first = np.cumsum(n) - n
    j = np.arange(total) - first[e]

    gaps = w["gap_ms"][e] * np.exp(w["sigma"][e] * rng.standard_normal(total))
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    ts = w["t0"][e] + (cum - cum[first][e]).astype(np.int64)

    walk_start = np.array(list(shop.walk_start.values()), dtype=np.int64)
    walk_len = np.array(list(shop.walk_len.values()), dtype=np.int64)
    robots = w["robots"][e]
    pos = w["pos0"][e] + (j - robots) * w["stride"][e]
    walk = w["walk"][e]
    path = shop.walk_paths[walk_start[walk] + np.mod(pos, walk_len[walk])]
    alt = rng.random(total) < w["p_alt"][e]
    if alt.any():
        alt_walk = w["alt_walk"][e][alt]
        path[alt] = shop.walk_paths[walk_start[alt_walk]
                                    + rng.integers(0, 1 << 30, int(alt.sum())) % walk_len[alt_walk]]
    path[robots & (j == 0)] = shop.robots

    ua = _agents(w, e, j, rng)
    referer = _referers(w, e, j, path, first)
    method = shop.path_method[path].copy()
    method[w["head"][e] & (method == GET)] = HEAD
    status = shop.path_status[path].copy()
    u = rng.random(total)
    status[(status == 200) & (u < w["p304"][e])] = 304
    status[u > 1.0 - w["p429"][e]] = 429
    noise = 1.0 + 0.03 * rng.standard_normal(total)
    size = np.where(shop.path_html[path], shop.path_size[path] * noise, shop.path_size[path])
    size = np.where((status == 304) | (method == HEAD), 0, np.where(status == 429, 169, size))
    pages = Events.build(ts_ms=ts, src=w["src"][e], ua=ua, method=method, path=path,
                         status=status, size=size, referer=referer)
    return Events.concat([pages, _assets(pages, w["assets"][e], shop, rng)])


def _agents(w: Table, e: np.ndarray, j: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ua0, ua_n, block = w["ua0"][e], w["ua_n"][e].astype(np.int64), w["ua_block"][e]
    rotating = ua_n > 1
    if not rotating.any():
        return np.asarray(ua0)
    ua = ua0.copy()
    by_request = rotating & (block == 0)
    ua[by_request] += rng.integers(0, ua_n[by_request])
    by_block = rotating & (block > 0)
    if by_block.any():
        blk = (w["pos0"][e][by_block] // 7 + j[by_block] // block[by_block]) * _UA_SCRAMBLE
        ua[by_block] += np.mod(blk, ua_n[by_block]).astype(np.int32)
    return np.asarray(ua)


def _referers(w: Table, e: np.ndarray, j: np.ndarray, path: np.ndarray,
              first: np.ndarray) -> np.ndarray:
    mode = w["ref_mode"][e]
    referer = np.full(e.size, NO_REFERER, dtype=np.int32)
    fixed = mode == REF_FIXED
    referer[fixed] = w["ref"][e][fixed]
    chain = np.flatnonzero((mode == REF_CHAIN) & (j > 0))
    referer[chain] = path[chain - 1]
    return referer


def _assets(pages: Events, per_page: np.ndarray, shop: Shop,
            rng: np.random.Generator) -> Events:
    """Theme css/js a headless browser loads after each page, uncached every time."""
    has = np.flatnonzero((per_page > 0) & shop.path_html[pages.path] & (pages.status == 200))
    if has.size == 0:
        return Events.empty()
    count = rng.integers(1, per_page[has].astype(np.int64) + 1)
    rows = np.repeat(has, count)
    k = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
    path = shop.core_assets[np.minimum(k, shop.core_assets.size - 1)]
    return Events.build(
        ts_ms=pages.ts_ms[rows] + (40 + 60 * k + rng.integers(0, 120, rows.size)),
        src=pages.src[rows],
        ua=pages.ua[rows],
        method=np.full(rows.size, GET),
        path=path,
        status=np.full(rows.size, 200),
        size=shop.path_size[path],
        referer=pages.path[rows],
    )
