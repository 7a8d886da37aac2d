"""People browsing the shop: sessions of pages, each page followed by its assets.

A session is a walk through a small Markov chain of page types (home, listing, product, search,
cart, checkout, login, ...). Every session advances one page per loop iteration, all sessions at
once, so the loop runs as many times as the longest session has pages, never once per person.

What makes these requests look human, and what detectors lean on:
* think times between pages are lognormal (seconds to minutes) around a personal pace;
* each HTML page is followed within about a second by its css/js/fonts/images, with the page as
  referer, as far as the browser's cache lets it: an empty cache loads the whole theme on the
  first page and mostly images after; a fresh cache (a returning visitor) asks for little or
  nothing, a stale one revalidates (304s); some visits load no assets at all;
* referer chains: the landing page comes from a search engine, a social site, an app's link
  shim or nowhere, and every later request names the page it came from (unless the person's
  browser or proxy strips referers);
* forms post and redirect (``POST /cart/add`` 302 then ``/cart``), people mistype (404) and
  follow old links (301);
* lengths vary: a session may be capped (a bounce of one to three pages) or held open (a long
  read of 20-60 pages).

Sessions with ``single`` set are one request (two or three at most): a hotlinked image, a bare
favicon or robots.txt, or a link-preview fetcher's page with its og:image.
"""

from __future__ import annotations

import numpy as np

from botguard.simulate.events import GET, NO_REFERER, Events
from botguard.simulate.plan import (
    CACHE_COLD,
    CACHE_NONE,
    CACHE_WARM,
    ENTRY_SEARCH,
    ENTRY_SOCIAL,
    REF_BY_ENTRY,
    SINGLE_FAVICON,
    SINGLE_IMAGE,
    SINGLE_PREVIEW,
    SINGLE_ROBOTS,
    Table,
)
from botguard.simulate.shop import IMAGES_PER_PRODUCT, SEARCH_REFERERS, SOCIAL_REFERERS, Shop

(HOME, CAT, PROD, SEARCH, CART_ADD, CART, CHECKOUT, PAYMENT, THANKS, LOGIN, LOGIN_POST,
 ACCOUNT, CONTENT, NOTFOUND, EXIT) = range(15)
N_STATES = 15
MAX_PAGES = 60

_T = np.zeros((N_STATES, N_STATES))
for _src, _row in {
    HOME: {CAT: 0.45, PROD: 0.16, SEARCH: 0.19, LOGIN: 0.04, CONTENT: 0.05, CART: 0.02,
           NOTFOUND: 0.01, EXIT: 0.08},
    CAT: {CAT: 0.32, PROD: 0.52, SEARCH: 0.05, HOME: 0.03, EXIT: 0.08},
    PROD: {PROD: 0.28, CAT: 0.22, CART_ADD: 0.12, SEARCH: 0.09, HOME: 0.04, NOTFOUND: 0.01,
           EXIT: 0.24},
    SEARCH: {PROD: 0.60, SEARCH: 0.12, CAT: 0.08, EXIT: 0.20},
    CART_ADD: {CART: 1.0},
    CART: {CHECKOUT: 0.35, PROD: 0.18, CAT: 0.14, EXIT: 0.33},
    CHECKOUT: {PAYMENT: 0.55, CART: 0.10, LOGIN: 0.05, EXIT: 0.30},
    PAYMENT: {THANKS: 1.0},
    THANKS: {HOME: 0.10, EXIT: 0.90},
    LOGIN: {LOGIN_POST: 0.85, EXIT: 0.15},
    LOGIN_POST: {ACCOUNT: 1.0},
    ACCOUNT: {HOME: 0.25, CAT: 0.30, PROD: 0.10, CHECKOUT: 0.05, EXIT: 0.30},
    CONTENT: {HOME: 0.30, CAT: 0.30, EXIT: 0.40},
    NOTFOUND: {HOME: 0.45, SEARCH: 0.25, EXIT: 0.30},
    EXIT: {EXIT: 1.0},
}.items():
    for _dst, _p in _row.items():
        _T[_src, _dst] = _p
TRANSITIONS_CDF = np.cumsum(_T / _T.sum(axis=1, keepdims=True), axis=1)
# a long read does not leave yet: the same choices without the exit
_T_STAY = _T.copy()
_T_STAY[:EXIT, EXIT] = 0.0
_T_STAY[EXIT, HOME] = 1.0
STAY_CDF = np.cumsum(_T_STAY / _T_STAY.sum(axis=1, keepdims=True), axis=1)

#: Landing page type by entry (direct, search engine, social link).
_LANDING = np.array([
    [0.65, 0.12, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.03, 0.0, 0.0],
    [0.17, 0.30, 0.50, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0],
    [0.15, 0.10, 0.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
]).cumsum(axis=1)
_POSTS = np.array([CART_ADD, PAYMENT, LOGIN_POST])


def _pick(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw: ``cdf`` is (n, k), ``u`` uniform (n,)."""
    return np.asarray(np.minimum((u[:, None] > cdf).sum(axis=1), cdf.shape[1] - 1))


def _popular(shop: Shop, rng: np.random.Generator, n: int) -> np.ndarray:
    return shop.products[np.searchsorted(shop.popularity_cdf, rng.random(n))]


def _in_category(shop: Shop, rng: np.random.Generator, cat: np.ndarray, first: np.ndarray,
                 span: np.ndarray) -> np.ndarray:
    """A product at listing positions ``first .. first+span`` of ``cat`` (popular if none)."""
    lo = shop.category_offsets[cat]
    hi = shop.category_offsets[cat + 1]
    pos = lo + first + np.floor(rng.random(cat.size) * span).astype(np.int64)
    ok = pos < hi
    out = _popular(shop, rng, cat.size)
    out[ok] = shop.category_members[pos[ok]]
    return out


class _Sessions:
    """Mutable per-session state while all sessions advance one page per step."""

    def __init__(self, s: Table, shop: Shop, rng: np.random.Generator) -> None:
        n = s["t0"].size
        self.shop, self.rng = shop, rng
        self.t = s["t0"].astype(np.float64)
        entry = s["entry"]
        self.state = _pick(_LANDING[entry], rng.random(n))
        search_ref = shop.external_referer(rng.integers(0, SEARCH_REFERERS, n))
        social_ref = shop.external_referer(rng.integers(SEARCH_REFERERS, SOCIAL_REFERERS, n))
        self.ref = np.where(entry == ENTRY_SEARCH, search_ref,
                            np.where(entry == ENTRY_SOCIAL, social_ref, NO_REFERER))
        self.ref = np.where(s["ref0"] == REF_BY_ENTRY, self.ref, s["ref0"])
        self.legacy = (entry == ENTRY_SEARCH) & (self.state == PROD) & (rng.random(n) < 0.05)
        self.prev = np.full(n, -1)
        self.cat = np.searchsorted(shop.category_cdf, rng.random(n))
        self.page = np.ones(n, dtype=np.int64)
        self.sort = np.zeros(n, dtype=np.int64)
        self.term = np.searchsorted(shop.term_cdf, rng.random(n))
        self.spage = np.ones(n, dtype=np.int64)
        self.prod = _popular(shop, rng, n)

    def resolve(self, a: np.ndarray) -> np.ndarray:
        """Path of the page each active session ``a`` requests now (updates its state)."""
        shop, rng = self.shop, self.rng
        s = self.state[a]
        path = np.empty(a.size, dtype=np.int32)
        fixed = {HOME: shop.home, CART_ADD: shop.cart_add, CART: shop.cart,
                 CHECKOUT: shop.checkout, PAYMENT: shop.payment, THANKS: shop.thanks,
                 LOGIN: shop.login, LOGIN_POST: shop.login_post, ACCOUNT: shop.account}
        for state, target in fixed.items():
            path[s == state] = target
        m = s == CONTENT
        path[m] = shop.content[rng.integers(0, shop.content.size, int(m.sum()))]
        m = s == NOTFOUND
        path[m] = shop.dead[rng.integers(0, shop.dead.size, int(m.sum()))]
        m = s == CAT
        path[m] = self._category(a[m])
        m = s == SEARCH
        path[m] = self._search(a[m])
        m = s == PROD
        path[m] = self._product(a[m])
        return path

    def _category(self, aa: np.ndarray) -> np.ndarray:
        shop, rng = self.shop, self.rng
        from_cat = self.prev[aa] == CAT
        u = rng.random(aa.size)
        n_sorts = shop.category_pages.shape[2]
        paginate = from_cat & (u < 0.45) & (self.page[aa] < shop.category_npages[self.cat[aa]])
        resort = from_cat & ~paginate & (u < 0.6)
        new = ~paginate & ~resort
        self.page[aa[paginate]] += 1
        self.sort[aa[resort]] = rng.integers(1, n_sorts, int(resort.sum()))
        self.page[aa[resort]] = 1
        fresh = aa[new]
        self.cat[fresh] = np.searchsorted(shop.category_cdf, rng.random(fresh.size))
        self.page[fresh] = 1
        self.sort[fresh] = np.where(rng.random(fresh.size) < 0.08,
                                    rng.integers(1, n_sorts, fresh.size), 0)
        return np.asarray(shop.category_pages[self.cat[aa], self.page[aa] - 1, self.sort[aa]])

    def _search(self, aa: np.ndarray) -> np.ndarray:
        shop, rng = self.shop, self.rng
        again = (self.prev[aa] == SEARCH) & (rng.random(aa.size) < 0.3) & (self.spage[aa] == 1)
        self.spage[aa[again]] = 2
        fresh = aa[~again]
        self.term[fresh] = np.searchsorted(shop.term_cdf, rng.random(fresh.size))
        self.spage[fresh] = 1
        return np.asarray(shop.search_pages[self.term[aa], self.spage[aa] - 1])

    def _product(self, aa: np.ndarray) -> np.ndarray:
        shop, rng = self.shop, self.rng
        prev = self.prev[aa]
        prod = _popular(shop, rng, aa.size)
        m = prev == CAT  # something on the listing page just seen
        if m.any():
            b = aa[m]
            prod[m] = _in_category(shop, rng, self.cat[b], (self.page[b] - 1) * shop.per_page,
                                   np.full(b.size, shop.per_page))
        m = prev == SEARCH  # a top search result
        if m.any():
            b = aa[m]
            cat = shop.term_category[self.term[b]]
            size = shop.category_offsets[cat + 1] - shop.category_offsets[cat]
            prod[m] = _in_category(shop, rng, cat, np.zeros(b.size, dtype=np.int64),
                                   np.minimum(size, 12) * rng.random(b.size))
        m = (prev == PROD) & (rng.random(aa.size) < 0.6)  # "you may also like"
        if m.any():
            b = aa[m]
            cat = shop.product_category[self.prod[b]]
            size = shop.category_offsets[cat + 1] - shop.category_offsets[cat]
            prod[m] = _in_category(shop, rng, cat, np.zeros(b.size, dtype=np.int64), size)
        self.prod[aa] = prod
        return np.asarray(shop.product_page[prod])


def expand_sessions(s: Table, shop: Shop, rng: np.random.Generator) -> Events:
    """All requests of the sessions in ``s`` (pages, redirects, assets, strays), unsorted."""
    if s["t0"].size == 0:
        return Events.empty()
    single = s["single"] != 0
    browse, strays = np.flatnonzero(~single), np.flatnonzero(single)
    return Events.concat([
        _browse({k: v[browse] for k, v in s.items()}, shop, rng),
        _strays({k: v[strays] for k, v in s.items()}, shop, rng),
    ])


def _browse(s: Table, shop: Shop, rng: np.random.Generator) -> Events:
    n = s["t0"].size
    if n == 0:
        return Events.empty()
    st = _Sessions(s, shop, rng)
    rec_sess: list[np.ndarray] = []
    rec_ts: list[np.ndarray] = []
    rec_path: list[np.ndarray] = []
    rec_ref: list[np.ndarray] = []

    # search engines still list some old URLs: 301, then the product page
    legacy = np.flatnonzero(st.legacy)
    legacy_prod = st.prod[legacy].copy()
    if legacy.size:
        rec_sess.append(legacy)
        rec_ts.append(st.t[legacy].copy())
        rec_path.append(shop.legacy_page[legacy_prod])
        rec_ref.append(st.ref[legacy].copy())
        st.t[legacy] += rng.uniform(60, 250, legacy.size)

    max_pages = s["max_pages"].astype(np.int64)
    max_pages[max_pages <= 0] = MAX_PAGES
    min_pages = s["min_pages"].astype(np.int64)
    active = np.arange(n)
    for step in range(MAX_PAGES):
        if active.size == 0:
            break
        path = st.resolve(active)
        if step == 0 and legacy.size:  # land on the product the old URL pointed at
            st.prod[legacy] = legacy_prod
            path[legacy] = shop.product_page[legacy_prod]
        rec_sess.append(active)
        rec_ts.append(st.t[active].copy())
        rec_path.append(path)
        rec_ref.append(st.ref[active].copy())

        s_now = st.state[active]
        is_post = np.isin(s_now, _POSTS)
        # a GET page becomes the referer of what follows; a form post keeps the form's page
        st.ref[active] = np.where(is_post, st.ref[active], path)
        think_ms = s["think_s"][active] * 1000.0 * np.exp(rng.standard_normal(active.size))
        think_ms = np.clip(think_ms, 1500.0, 1_500_000.0)
        st.t[active] += np.where(is_post, rng.uniform(80, 400, active.size), think_ms)
        nxt = _pick(TRANSITIONS_CDF[s_now], rng.random(active.size))
        stay = np.flatnonzero((nxt == EXIT) & (min_pages[active] > step + 1))
        if stay.size:
            nxt[stay] = _pick(STAY_CDF[s_now[stay]], rng.random(stay.size))
        nxt[max_pages[active] <= step + 1] = EXIT
        st.prev[active] = s_now
        st.state[active] = nxt
        active = active[nxt != EXIT]

    sess = np.concatenate(rec_sess)
    paths = np.concatenate(rec_path)
    noise = 1.0 + 0.03 * rng.standard_normal(sess.size)  # dynamic pages vary a little
    pages = Events.build(
        ts_ms=np.concatenate(rec_ts).astype(np.int64),
        src=s["src"][sess],
        ua=s["ua"][sess],
        method=shop.path_method[paths],
        path=paths,
        status=shop.path_status[paths],
        size=np.where(shop.path_html[paths], shop.path_size[paths] * noise,
                      shop.path_size[paths]),
        referer=np.where(s["strip_ref"][sess], NO_REFERER, np.concatenate(rec_ref)),
    )
    return Events.concat([pages, _assets(pages, sess, s["cache"][sess], s["strip_ref"][sess],
                                         shop, rng)])


def _assets(pages: Events, sess: np.ndarray, cache_page: np.ndarray, strip_page: np.ndarray,
            shop: Shop, rng: np.random.Generator) -> Events:
    """The css/js/fonts/images each HTML page pulls in within about a second."""
    html = np.flatnonzero(shop.path_html[pages.path] & (pages.method == GET)
                          & (cache_page != CACHE_NONE))
    if html.size == 0:
        return Events.empty()
    # the first HTML page of a session loads the whole theme (pages are in step order)
    key = sess[html]
    order = np.argsort(key, kind="stable")
    fresh = np.zeros(html.size, dtype=bool)
    fresh[order[np.r_[True, key[order][1:] != key[order][:-1]]]] = True
    cache = cache_page[html]
    warm = cache == CACHE_WARM
    n_core_all = shop.core_assets.size
    # an empty or stale cache asks for everything; a fresh one for a few pictures at most
    count = np.where(fresh, rng.integers(8, 16, html.size), rng.integers(3, 9, html.size))
    n_core = np.where(fresh, np.minimum(count, n_core_all), rng.integers(0, 3, html.size))
    # a fresh cache: the odd revalidation of the theme and a couple of new pictures at most
    warm_core = np.where(fresh, rng.binomial(n_core_all, 0.1, html.size),
                         (rng.random(html.size) < 0.1).astype(np.int64))
    warm_images = np.where(fresh, rng.integers(0, 3, html.size), rng.integers(0, 2, html.size))
    n_core = np.where(warm, warm_core, n_core)
    count = np.where(warm, warm_core + warm_images, count)
    rows = np.repeat(np.arange(html.size), count)
    k = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
    core = k < n_core[rows]

    path = np.empty(rows.size, dtype=np.int32)
    # a cold first page loads the theme in order; otherwise a few of it from anywhere
    in_order = fresh & (cache != CACHE_WARM)
    first_core = np.where(in_order, 0, rng.integers(0, n_core_all, html.size))
    path[core] = shop.core_assets[(first_core[rows[core]] + k[core]) % n_core_all]
    img_rows = rows[~core]
    kk = (k - n_core[rows])[~core]
    page_path = pages.path[html][img_rows]
    slot = _popular(shop, rng, img_rows.size)
    image_k = np.zeros(img_rows.size, dtype=np.int64)
    # product pages show their own pictures first, listings their products' thumbnails
    own = shop.path_slot[page_path]
    m = (own >= 0) & (kk < IMAGES_PER_PRODUCT) & (shop.path_status[page_path] == 200)
    slot[m] = own[m]
    image_k[m] = kk[m]
    cat = shop.path_category[page_path]
    b = np.flatnonzero(cat >= 0)
    if b.size:
        pos = (shop.category_offsets[cat[b]] + shop.path_listing_page[page_path[b]]
               * shop.per_page + kk[b])
        ok = pos < shop.category_offsets[cat[b] + 1]
        slot[b[ok]] = shop.category_members[pos[ok]]
    path[~core] = shop.images[slot, image_k]

    c = cache[rows]
    u = rng.random(rows.size)
    # what the browser already holds comes back 304: the theme after the first page, and
    # whatever a returning visitor's cache revalidates
    cold, warm_row = c == CACHE_COLD, c == CACHE_WARM
    cached = np.where(
        core,
        np.select([cold, warm_row], [~fresh[rows], u < 0.97], u < 0.97),
        np.select([cold, warm_row], [u < 0.05, u < 0.4], u < 0.5),
    )
    gaps = 25.0 + rng.exponential(55.0, rows.size)
    cum = np.cumsum(gaps)
    # time since the page of each asset (a fresh cache may leave a page with none)
    before = np.concatenate([[0.0], cum])[np.cumsum(count) - count]
    offset_in_page = cum - np.repeat(before, count)
    status = np.where(cached, 304, 200).astype(np.int16)
    return Events.build(
        ts_ms=pages.ts_ms[html][rows] + offset_in_page.astype(np.int64),
        src=pages.src[html][rows],
        ua=pages.ua[html][rows],
        method=np.zeros(rows.size),
        path=path,
        status=status,
        size=np.where(cached, 0, shop.path_size[path]),
        referer=np.where(strip_page[html][rows], NO_REFERER, pages.path[html][rows]),
    )


def _strays(s: Table, shop: Shop, rng: np.random.Generator) -> Events:
    """One-off requests: a hotlinked image (or two), a bare favicon or robots.txt, and link
    previews (robots.txt first for some, the page, then its og:image)."""
    n = s["t0"].size
    if n == 0:
        return Events.empty()
    kind = s["single"]
    t0 = s["t0"]
    slot = _popular(shop, rng, n)
    ref0 = np.where(s["ref0"] == REF_BY_ENTRY, NO_REFERER, s["ref0"]).astype(np.int32)
    ref0[s["strip_ref"]] = NO_REFERER
    preview = kind == SINGLE_PREVIEW

    # the main request of each stray
    main = np.empty(n, dtype=np.int32)
    image = kind == SINGLE_IMAGE
    main[image] = shop.images[slot[image], rng.integers(0, IMAGES_PER_PRODUCT, int(image.sum()))]
    main[kind == SINGLE_FAVICON] = shop.favicon
    main[kind == SINGLE_ROBOTS] = shop.robots
    # what people share: mostly products, sometimes the shop, a listing or a page
    what = rng.choice(4, n, p=[0.70, 0.12, 0.10, 0.08])
    cat = np.searchsorted(shop.category_cdf, rng.random(n))
    page = np.select(
        [what == 0, what == 1, what == 2],
        [shop.product_page[slot], np.full(n, shop.home), shop.category_pages[cat, 0, 0]],
        shop.content[rng.integers(0, shop.content.size, n)],
    )
    main[preview] = page[preview]
    robots_first = preview & s["robots"]
    main_ts = t0 + np.where(robots_first, rng.integers(150, 700, n), 0)

    # followers: a second hotlinked picture, or the preview's og:image
    follow = s["extra"] & (image | preview)
    og = np.where(what == 0, shop.images[slot, 0], shop.logo)
    second = shop.images[_popular(shop, rng, n), 0]
    follow_path = np.where(preview, og, second)
    follow_ts = main_ts + rng.integers(120, 1500, n)

    r = np.flatnonzero(robots_first)
    f = np.flatnonzero(follow)
    ev = np.concatenate([np.arange(n), r, f])
    path = np.concatenate([main, np.full(r.size, shop.robots, dtype=np.int32), follow_path[f]])
    ts = np.concatenate([main_ts, t0[r], follow_ts[f]])
    status = shop.path_status[path].copy()
    # a browser that saw the picture or icon before revalidates it
    again = ~preview[ev] & (path != shop.robots) & (rng.random(ev.size) < 0.25)
    status[again & (status == 200)] = 304
    noise = 1.0 + 0.03 * rng.standard_normal(ev.size)
    size = np.where(shop.path_html[path], shop.path_size[path] * noise, shop.path_size[path])
    return Events.build(
        ts_ms=ts,
        src=s["src"][ev],
        ua=s["ua"][ev],
        method=np.zeros(ev.size),
        path=path,
        status=status,
        size=np.where(status == 304, 0, size),
        referer=ref0[ev],
    )
