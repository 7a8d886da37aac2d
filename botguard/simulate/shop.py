"""The simulated shop: catalogue, categories and every request target a client can ask for.

All requests in the simulation are indices into one path table built here, together with the
status, size and method that target normally answers with. Generators then pick integers
(``shop.product_page[slot]``) instead of formatting URLs, which keeps generation vectorized.

The table also holds the *walks*: fixed orders in which bots traverse the site (ids in order,
category listings then their products, the sitemap, a vulnerability scanner's word list).
A bot is a walk plus a start, a stride and a pace, so each bot kind is just different numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from botguard.simulate.events import GET, NO_REFERER, POST
from botguard.simulate.layouts import LAYOUTS, Layout, Product

IMAGES_PER_PRODUCT = 3

_ADJECTIVES = (
    "classic", "essential", "relaxed", "slim", "heritage", "everyday", "premium", "vintage",
    "organic", "recycled", "lightweight", "cozy", "tailored", "oversized", "cropped", "soft",
    "rugged", "urban", "alpine", "coastal", "studio", "weekend", "signature", "modern",
)
_COLOURS = (
    "black", "white", "navy", "olive", "sand", "charcoal", "burgundy", "sage", "rust", "cream",
    "indigo", "forest", "stone", "blush", "cobalt", "mustard", "grey", "camel",
)
_NOUNS = (
    "t-shirt", "hoodie", "crew-sweater", "cardigan", "denim-jacket", "parka", "chinos", "jeans",
    "shorts", "linen-shirt", "oxford-shirt", "polo", "dress", "skirt", "blazer", "trench-coat",
    "sneakers", "boots", "loafers", "sandals", "beanie", "scarf", "tote-bag", "backpack",
    "wallet", "belt", "watch", "sunglasses", "mug", "candle", "throw-blanket", "cushion-cover",
    "duvet-set", "towel-set", "vase", "planter", "water-bottle", "yoga-mat", "socks", "cap",
)
_CATEGORIES = (
    "new-arrivals", "bestsellers", "sale", "mens-tops", "mens-trousers", "mens-outerwear",
    "womens-tops", "womens-dresses", "womens-outerwear", "knitwear", "denim", "shoes", "sneakers",
    "boots", "accessories", "bags", "jewellery", "watches", "sunglasses", "hats", "socks",
    "underwear", "swimwear", "sportswear", "kids", "baby", "home", "kitchen", "bedding", "bath",
    "decor", "candles", "outdoor", "garden", "gifts", "gift-cards", "beauty", "skincare",
    "fragrance", "stationery", "books", "pets", "travel", "last-chance", "limited-edition",
    "essentials", "workwear", "loungewear",
)
_SEARCH_WORDS = (
    "black", "white", "wool", "linen", "cotton", "leather", "waterproof", "summer", "winter",
    "gift", "sale", "kids", "mens", "womens", "vegan", "oversized", "slim", "organic",
)
_EXTERNAL_REFERERS = (
    # search engines send only their origin (referrer policy), social sites their link shim
    "https://www.google.com/", "https://www.google.de/", "https://www.google.co.uk/",
    "https://www.bing.com/", "https://duckduckgo.com/", "https://search.yahoo.com/",
    "https://www.ecosia.org/", "https://yandex.ru/",
    "https://l.facebook.com/", "https://www.instagram.com/", "https://t.co/",
    "https://www.pinterest.com/", "https://www.reddit.com/", "https://www.tiktok.com/",
    # in-app browsers' link shims, and sites that embed a shop's pictures
    "https://l.instagram.com/", "https://m.facebook.com/", "https://www.linkedin.com/",
    "https://www.tumblr.com/", "https://www.quora.com/", "https://medium.com/",
)
#: Number of search-engine entries at the start of ``_EXTERNAL_REFERERS``.
SEARCH_REFERERS = 8
#: End of the social sites an ordinary visitor arrives from (after the search engines).
SOCIAL_REFERERS = 14
#: Pages that show the shop's images or pages inline (image search, pins, forums, blogs).
EMBED_REFERERS = ("https://www.google.com/", "https://www.pinterest.com/",
                  "https://www.reddit.com/", "https://www.tumblr.com/", "https://www.quora.com/",
                  "https://medium.com/", "https://l.facebook.com/")

_PROBES: tuple[tuple[str, int, int], ...] = (
    # (path, status, method) — what scanners ask for on any site; none of it exists here
    ("/.env", 404, GET), ("/.env.production", 404, GET), ("/api/.env", 404, GET),
    ("/.git/config", 404, GET), ("/.git/HEAD", 404, GET), ("/.svn/entries", 404, GET),
    ("/.htaccess", 403, GET), ("/.htpasswd", 403, GET), ("/.DS_Store", 404, GET),
    ("/.aws/credentials", 404, GET), ("/.vscode/sftp.json", 404, GET),
    ("/wp-login.php", 404, GET), ("/wp-admin/", 404, GET), ("/wp-admin/setup-config.php", 404, GET),
    ("/xmlrpc.php", 404, POST), ("/wp-content/plugins/wp-file-manager/readme.txt", 404, GET),
    ("/wp-config.php.bak", 404, GET), ("/wp-includes/wlwmanifest.xml", 404, GET),
    ("/phpmyadmin/", 404, GET), ("/phpMyAdmin/index.php", 404, GET), ("/pma/", 404, GET),
    ("/admin", 301, GET), ("/administrator/", 404, GET), ("/admin/config.php", 404, GET),
    ("/config.php.bak", 404, GET), ("/backup.zip", 404, GET), ("/backup.sql", 404, GET),
    ("/db.sql", 404, GET), ("/dump.sql", 404, GET), ("/site.tar.gz", 404, GET),
    ("/server-status", 403, GET), ("/info.php", 404, GET), ("/phpinfo.php", 404, GET),
    ("/test.php", 404, GET), ("/shell.php", 404, GET),
    ("/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 404, POST),
    ("/cgi-bin/luci/;stok=/locale", 404, GET), ("/boaform/admin/formLogin", 404, POST),
    ("/HNAP1/", 404, GET), ("/GponForm/diag_Form?images/", 404, POST),
    ("/solr/admin/info/system?wt=json", 404, GET), ("/actuator/env", 404, GET),
    ("/actuator/health", 404, GET), ("/manager/html", 404, GET), ("/jenkins/login", 404, GET),
    ("/console/", 404, GET), ("/druid/index.html", 404, GET), ("/telescope/requests", 404, GET),
    ("/_ignition/execute-solution", 404, POST), ("/owa/auth/logon.aspx", 404, GET),
    ("/+CSCOE+/logon.html", 404, GET), ("/global-protect/login.esp", 404, GET),
    ("/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession", 400, GET),
    ("/geoserver/web/", 404, GET), ("/docker-compose.yml", 404, GET),
    ("/Dockerrun.aws.json", 404, GET), ("/config.json", 404, GET), ("/sftp-config.json", 404, GET),
    ("/../../../../etc/passwd", 400, GET), ("/static/..%2f..%2f..%2f..%2fetc%2fpasswd", 400, GET),
    ("/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", 400, POST),
    ("/index.php?page=../../../../etc/passwd", 404, GET),
    ("/?id=1'%20OR%20'1'='1", 200, GET), ("/?id=1%20UNION%20SELECT%20NULL,NULL,NULL--", 200, GET),
    ("/login?username=admin'--&password=x", 404, GET),
    ("/?XDEBUG_SESSION_START=phpstorm", 200, GET),
    ("/?s=%3Cscript%3Ealert(1)%3C/script%3E", 200, GET), ("/.well-known/security.txt", 404, GET),
    ("/autodiscover/autodiscover.json?@zdi/Powershell", 404, GET), ("/hudson", 404, GET),
)


@dataclass
class _PathTable:
    paths: list[str] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    method: list[int] = field(default_factory=list)
    html: list[bool] = field(default_factory=list)

    def add(self, path: str, status: int, size: float, *, method: int = GET,
            html: bool = False) -> int:
        self.paths.append(path)
        self.status.append(status)
        self.size.append(max(0, int(size)))
        self.method.append(method)
        self.html.append(html)
        return len(self.paths) - 1

    def add_many(self, paths: list[str], status: int | list[int], sizes: np.ndarray, *,
                 html: bool = False) -> np.ndarray:
        statuses = status if isinstance(status, list) else [status] * len(paths)
        start = len(self.paths)
        for p, s, b in zip(paths, statuses, sizes.tolist(), strict=True):
            self.add(p, s, b, html=html)
        return np.arange(start, len(self.paths), dtype=np.int32)


@dataclass(frozen=True)
class Shop:
    """Everything a generator needs to choose a request, as integer arrays into ``paths``."""

    layout: str
    host: str
    paths: list[str]
    path_status: np.ndarray  # int16: what the target normally answers
    path_size: np.ndarray  # int32: bytes of its usual body
    path_method: np.ndarray  # int8: GET unless the target is a form post
    path_html: np.ndarray  # bool: a page that makes a browser fetch assets
    path_slot: np.ndarray  # int32: product slot of a product page, else -1
    path_category: np.ndarray  # int32: category of a listing page, else -1
    path_listing_page: np.ndarray  # int32: 0-based page number of a listing page
    external_referers: list[str]
    n_slots: int
    exists: np.ndarray  # bool per slot: sequential walks hit 404 on missing ids
    products: np.ndarray  # existing slots in catalogue order
    popularity_cdf: np.ndarray  # over ``products``: people look at few products a lot
    product_page: np.ndarray  # path per slot
    legacy_page: np.ndarray  # 301 path per slot
    images: np.ndarray  # (n_slots, IMAGES_PER_PRODUCT) paths
    polls: np.ndarray  # (n_slots, k) price/stock endpoints
    product_category: np.ndarray  # per slot
    category_members: np.ndarray  # existing slots ordered by category, then listing position
    category_offsets: np.ndarray  # (n_categories + 1)
    category_pages: np.ndarray  # (n_categories, max_pages, n_sorts) paths
    category_npages: np.ndarray
    category_cdf: np.ndarray
    per_page: int
    search_pages: np.ndarray  # (n_terms, 2) paths
    term_category: np.ndarray
    term_cdf: np.ndarray
    core_assets: np.ndarray
    content: np.ndarray
    dead: np.ndarray
    probes: np.ndarray
    sitemaps: np.ndarray
    home: int
    health: int
    robots: int
    favicon: int
    logo: int  # the theme's logo: what a link preview shows for a page without a product
    feed: int
    cart: int
    cart_add: int
    checkout: int
    payment: int
    thanks: int
    login: int
    login_post: int
    account: int
    walk_paths: np.ndarray  # every walk concatenated
    walk_start: dict[str, int]
    walk_len: dict[str, int]

    @property
    def n_paths(self) -> int:
        return len(self.paths)

    def external_referer(self, index: np.ndarray | int) -> np.ndarray:
        """Referer code of external referer ``index`` (see ``events.NO_REFERER``)."""
        return np.asarray(index, dtype=np.int32) + self.n_paths

    def referer_code(self, url: str | None) -> int:
        """Referer code of the external ``url`` (``NO_REFERER`` for None)."""
        return NO_REFERER if url is None else self.external_referers.index(url) + self.n_paths

    def walk(self, name: str, position: np.ndarray) -> np.ndarray:
        """Path at ``position`` (any integer, wraps around) of the named walk."""
        length = self.walk_len[name]
        return np.asarray(self.walk_paths[self.walk_start[name] + np.mod(position, length)])


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


#: Typical transfer sizes (median bytes, gzip where it applies) by file extension.
_ASSET_MEDIANS = {".css": 28000, ".js": 45000, ".woff2": 38000, ".svg": 3500, ".ico": 4300,
                  ".png": 9000, ".jpg": 85000, ".webp": 60000}


def _asset_size(path: str, rng: np.random.Generator) -> float:
    name = path.split("?", 1)[0]
    median = next((v for ext, v in _ASSET_MEDIANS.items() if name.endswith(ext)), 20000)
    return float(_lognormal(rng, median, 0.5, 1)[0])


def _zipf_cdf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """CDF of a Zipf-like popularity over ``n`` items in random rank order."""
    weights = 1.0 / np.arange(10, 10 + n) ** exponent
    weights = weights[rng.permutation(n)]
    cdf = np.cumsum(weights)
    return np.asarray(cdf / cdf[-1])


def _catalogue(layout: Layout, rng: np.random.Generator) -> list[Product]:
    n_slots = int(rng.integers(2500, 6000))
    combos = len(_ADJECTIVES) * len(_COLOURS) * len(_NOUNS)
    picks = rng.choice(combos, size=n_slots, replace=False)
    products = []
    for slot, c in enumerate(picks.tolist()):
        a, rest = divmod(c, len(_COLOURS) * len(_NOUNS))
        colour, noun = divmod(rest, len(_NOUNS))
        handle = f"{_ADJECTIVES[a]}-{_COLOURS[colour]}-{_NOUNS[noun]}"
        pid = layout.id_base + slot
        sku = f"{noun:02d}{pid:06d}-{_COLOURS[colour][:2].upper()}"
        asin = "B0" + np.base_repr(0x5A1D0000 + pid * 7919, 36).rjust(8, "0")[-8:]
        products.append(Product(slot=slot, id=pid, handle=handle, sku=sku, asin=asin))
    return products


def build_shop(layout_index: int, rng: np.random.Generator) -> Shop:
    """Build the catalogue and path table of one shop (deterministic for a given ``rng``)."""
    layout = LAYOUTS[layout_index % len(LAYOUTS)]
    table = _PathTable()
    brand = rng.choice(["northwind", "fjord-and-pine", "urban-thread", "kestrel", "maple-lane",
                        "bluewater", "ironbark", "sunday-supply"])
    host = f"https://www.{brand}.example"

    catalogue = _catalogue(layout, rng)
    n_slots = len(catalogue)
    exists = rng.random(n_slots) > (0.08 if layout.numeric_ids else 0.0)
    exists[0] = True

    home = table.add("/", 200, _lognormal(rng, 26000, 0.1, 1)[0], html=True)
    page_sizes = _lognormal(rng, 27000, 0.25, n_slots)
    product_page = np.empty(n_slots, dtype=np.int32)
    for p, size, ok in zip(catalogue, page_sizes.tolist(), exists.tolist(), strict=True):
        # a missing id renders the shop's 404 page
        product_page[p.slot] = table.add(layout.product(p), 200 if ok else 404,
                                         size if ok else 9100, html=True)
    legacy_page = table.add_many([layout.legacy(p) for p in catalogue], 301,
                                 np.full(n_slots, 162))
    image_sizes = _lognormal(rng, 85000, 0.5, n_slots * IMAGES_PER_PRODUCT)
    images = table.add_many(
        [layout.image(p, k) for p in catalogue for k in range(IMAGES_PER_PRODUCT)], 200,
        image_sizes,
    ).reshape(n_slots, IMAGES_PER_PRODUCT)
    poll_urls = [layout.poll(p) for p in catalogue]
    n_poll = len(poll_urls[0])
    poll_sizes = _lognormal(rng, 900, 0.6, n_slots * n_poll)
    polls = table.add_many([u for urls in poll_urls for u in urls],
                           [200 if ok else 404 for ok in exists.tolist() for _ in range(n_poll)],
                           poll_sizes).reshape(n_slots, n_poll)

    # categories: uneven sizes, listing order within a category is the shop's "featured" order
    n_cat = int(rng.integers(18, 40))
    cat_slugs = rng.choice(_CATEGORIES, size=n_cat, replace=False).tolist()
    cat_weights = rng.dirichlet(np.full(n_cat, 1.5))
    product_category = rng.choice(n_cat, size=n_slots, p=cat_weights).astype(np.int32)
    existing = np.flatnonzero(exists).astype(np.int32)
    listing = existing[np.lexsort((rng.random(existing.size), product_category[existing]))]
    counts = np.bincount(product_category[existing], minlength=n_cat)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    npages = np.maximum(1, -(-counts // layout.per_page)).astype(np.int32)
    max_pages = int(npages.max())
    n_sorts = len(layout.sorts)
    cat_pages = np.full((n_cat, max_pages, n_sorts), -1, dtype=np.int32)
    for c, slug in enumerate(cat_slugs):
        sizes = _lognormal(rng, 31000, 0.15, int(npages[c]) * n_sorts).tolist()
        for page in range(int(npages[c])):
            for s, sort in enumerate(layout.sorts):
                cat_pages[c, page, s] = table.add(layout.category(slug, c + 1, page + 1, sort),
                                                  200, sizes[page * n_sorts + s], html=True)

    n_terms = 400
    words = rng.choice(_NOUNS, size=n_terms).tolist()
    qualifiers = rng.choice(_SEARCH_WORDS + _COLOURS, size=n_terms).tolist()
    terms = [(f"{q}+{w}" if i % 3 else w).replace("-", "+")
             for i, (q, w) in enumerate(zip(qualifiers, words, strict=True))]
    search_pages = np.empty((n_terms, 2), dtype=np.int32)
    for i, term in enumerate(terms):
        for page in (1, 2):
            search_pages[i, page - 1] = table.add(layout.search(term, page), 200,
                                                  _lognormal(rng, 24000, 0.2, 1)[0], html=True)

    core_sizes = np.array([_asset_size(path, rng) for path in layout.core])
    core_assets = table.add_many(list(layout.core), 200, core_sizes)
    content = table.add_many(list(layout.content), 200,
                             _lognormal(rng, 14000, 0.3, len(layout.content)), html=True)
    dead = table.add_many(list(layout.dead()), 404, np.full(len(layout.dead()), 9100), html=True)
    robots = table.add("/robots.txt", 200, 600 + int(rng.integers(0, 900)))
    sitemaps = table.add_many(list(layout.sitemaps(n_slots)), 200,
                              _lognormal(rng, 60000, 0.8, len(layout.sitemaps(n_slots))))
    health = table.add("/health", 200, 15)
    feed = table.add(layout.feed, 200, _lognormal(rng, 32000, 0.2, 1)[0])
    cart = table.add("/cart", 200, 12000, html=True)
    cart_add = table.add("/cart/add", 302, 0, method=POST)
    checkout = table.add("/checkout", 200, 18500, html=True)
    payment = table.add("/checkout/payment", 302, 0, method=POST)
    thanks = table.add("/checkout/thank-you", 200, 9300, html=True)
    login = table.add(layout.login, 200, 11000, html=True)
    login_post = table.add(layout.login, 302, 0, method=POST)
    account = table.add(layout.account, 200, 14500, html=True)
    probes = np.array(
        [table.add(p, s, 9100 if s == 404 else 157 if s in (400, 403) else 162 if s == 301
                   else 26000, method=m) for p, s, m in _PROBES]
        + [table.add(layout.search("1'%20OR%20'1'='1", 1), 200, 24000),
           table.add(layout.category("../../../../etc/passwd", 1, 1, ""), 404, 9100)],
        dtype=np.int32,
    )

    walks = _walks(rng, exists, product_page, legacy_page, listing, offsets, cat_pages, npages,
                   content, dead, probes, sitemaps, home, robots, health, feed, polls)
    walk_names = list(walks)
    n_paths = len(table.paths)
    path_slot = np.full(n_paths, -1, dtype=np.int32)
    path_slot[product_page] = np.arange(n_slots, dtype=np.int32)
    path_category = np.full(n_paths, -1, dtype=np.int32)
    path_listing_page = np.zeros(n_paths, dtype=np.int32)
    listed = cat_pages >= 0
    c_idx, p_idx, _ = np.nonzero(listed)
    path_category[cat_pages[listed]] = c_idx
    path_listing_page[cat_pages[listed]] = p_idx
    lengths = [len(walks[n]) for n in walk_names]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()

    return Shop(
        layout=layout.name,
        host=host,
        paths=table.paths,
        path_status=np.asarray(table.status, dtype=np.int16),
        path_size=np.asarray(table.size, dtype=np.int32),
        path_method=np.asarray(table.method, dtype=np.int8),
        path_html=np.asarray(table.html, dtype=bool),
        path_slot=path_slot,
        path_category=path_category,
        path_listing_page=path_listing_page,
        external_referers=list(_EXTERNAL_REFERERS),
        n_slots=n_slots,
        exists=exists,
        products=listing,
        popularity_cdf=_zipf_cdf(rng, listing.size, 1.1),
        product_page=product_page,
        legacy_page=legacy_page,
        images=images,
        polls=polls,
        product_category=product_category,
        category_members=listing,
        category_offsets=offsets,
        category_pages=cat_pages,
        category_npages=npages,
        category_cdf=np.cumsum(cat_weights) / np.sum(cat_weights),
        per_page=layout.per_page,
        search_pages=search_pages,
        term_category=rng.integers(0, n_cat, n_terms).astype(np.int32),
        term_cdf=_zipf_cdf(rng, n_terms, 1.0),
        core_assets=core_assets,
        content=content,
        dead=dead,
        probes=probes,
        sitemaps=sitemaps,
        home=home,
        health=health,
        robots=robots,
        favicon=int(core_assets[list(layout.core).index("/favicon.ico")]),
        logo=int(core_assets[next(i for i, c in enumerate(layout.core) if "logo" in c)]),
        feed=feed,
        cart=cart,
        cart_add=cart_add,
        checkout=checkout,
        payment=payment,
        thanks=thanks,
        login=login,
        login_post=login_post,
        account=account,
        walk_paths=np.concatenate([walks[n] for n in walk_names]).astype(np.int32),
        walk_start=dict(zip(walk_names, starts, strict=True)),
        walk_len=dict(zip(walk_names, lengths, strict=True)),
    )


def _walks(rng: np.random.Generator, exists: np.ndarray, product_page: np.ndarray,
           legacy_page: np.ndarray, listing: np.ndarray, offsets: np.ndarray,
           cat_pages: np.ndarray, npages: np.ndarray, content: np.ndarray, dead: np.ndarray,
           probes: np.ndarray, sitemaps: np.ndarray, home: int, robots: int, health: int,
           feed: int, polls: np.ndarray) -> dict[str, np.ndarray]:
    """The orders in which bots traverse the site; see the module docstring."""
    existing = np.flatnonzero(exists)
    by_listing: list[np.ndarray] = []
    for c in range(cat_pages.shape[0]):
        by_listing.append(cat_pages[c, : npages[c], 0])
        by_listing.append(product_page[listing[offsets[c]: offsets[c + 1]]])
    all_listing_pages = np.concatenate([cat_pages[c, : npages[c], 0]
                                        for c in range(cat_pages.shape[0])])
    # what a search engine knows: mostly products, the listings, a few moved and removed URLs
    removed = product_page[~exists] if (~exists).any() else dead
    crawl = np.concatenate([
        product_page[existing], all_listing_pages, content, [home],
        legacy_page[rng.choice(existing, size=max(1, existing.size // 40), replace=False)],
        removed[: max(1, existing.size // 60)],
    ])
    walks = {
        "ids": product_page,  # every id in order, gaps included
        "products": product_page[listing],
        "listing": np.concatenate(by_listing),
        "sitemap": np.concatenate([sitemaps, product_page[existing]]),
        "crawl": crawl[rng.permutation(crawl.size)],
        "probes": probes,
        "home": np.array([home]),
        "health": np.array([health]),
        "feed": np.array([feed]),
        "robots": np.array([robots]),
        "sitemaps": sitemaps,
    }
    for k in range(polls.shape[1]):
        walks[f"poll{k}"] = polls[listing, k]
    return walks
