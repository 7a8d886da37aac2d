"""Per-hit derived columns: what kind of request each line is (asset, product, API, probe…).

All vectorized Polars expressions built from the URL patterns in the ``catalogue`` config,
so a shop with other URL shapes is one YAML edit away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from botguard.config.models import Config
from botguard.features.sketches import key_hash

if TYPE_CHECKING:
    from botguard.features.product_shapes import ProductInference


def _any(col: pl.Expr, patterns: list[str]) -> pl.Expr:
    """Whether any pattern matches: one alternation, one pass of the regex engine (inline
    flags such as ``(?i)`` stay scoped to their own group)."""
    if not patterns:
        return pl.lit(False)
    return col.str.contains("|".join(f"(?:{p})" for p in patterns)).fill_null(False)


def _param_present(query: pl.Expr, names: list[str]) -> pl.Expr:
    if not names:
        return pl.lit(False)
    alt = "|".join(names)
    return query.str.contains(f"(?i)(?:^|&)(?:{alt})=").fill_null(False)


def client_key_expr(cfg: Config) -> pl.Expr:
    """The configured client key as a string expression."""
    key = cfg.session.key
    ip = pl.col("client_ip")
    if key in ("ip", "ipv6_64"):
        bits = 64 if key == "ipv6_64" else cfg.session.ipv6_prefix
        if bits < 128:
            ip = ip.map_batches(lambda ips: v6_networks(ips, bits), return_dtype=pl.String)
        return pl.coalesce(ip, pl.lit("-"))
    if key == "ip+user_agent":
        return pl.concat_str([pl.coalesce(ip, pl.lit("-")), pl.coalesce(pl.col("user_agent"), pl.lit(""))], separator=" | ")
    field = key.split(":", 1)[1]
    return pl.coalesce(pl.col(field), pl.lit("-"))


def v6_networks(ips: pl.Series, bits: int) -> pl.Series:
    """IPv6 addresses → their enclosing /``bits`` network ('2001:db8:1:2::/64'); IPv4 and
    nulls unchanged. Nothing at all to do in an IPv4-only batch."""
    from botguard.iputil import prefix

    v6 = ips.str.contains(":", literal=True).fill_null(False)
    if not v6.any():
        return ips
    idx = v6.arg_true()
    return ips.clone().scatter(idx, prefix(ips.gather(idx), 32, bits))


def path_flags(paths: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """URL flags for each distinct path (a shop has far fewer paths than hits)."""
    cat = cfg.catalogue
    path = pl.col("path").fill_null("")
    lpath = path.str.to_lowercase()
    ext_alt = "|".join(e.lower() for e in cat.asset_extensions)
    is_api = _any(path, cat.api_patterns)
    is_asset = (
        lpath.str.contains(rf"\.(?:{ext_alt})$")
        | (
            pl.any_horizontal([lpath.str.starts_with(p.lower()) for p in cat.asset_prefixes])
            if cat.asset_prefixes else pl.lit(False)
        )
        | _any(path, cat.asset_patterns)
    ) & ~is_api
    product = (
        pl.coalesce([path.str.extract(p, 1) for p in cat.product_patterns])
        if cat.product_patterns else pl.lit(None, pl.String)
    )
    if cat.non_product_patterns:
        product = pl.when(_any(path, cat.non_product_patterns)).then(None).otherwise(product)
    is_asset = is_asset.fill_null(False)
    background = _any(path, cat.background_patterns)
    return paths.with_columns(
        is_asset.alias("is_asset"),
        background.alias("is_background"),
        product.alias("_product_path"),
        is_api.alias("is_api"),
        _any(path, cat.listing_patterns).alias("is_listing"),
        _any(path, cat.cart_patterns).alias("is_cart"),
        _any(path, cat.checkout_patterns).alias("is_checkout"),
        _any(path, cat.login_patterns).alias("is_login"),
        lpath.is_in([p.lower() for p in cat.robots_paths]).fill_null(False).alias("is_robots"),
        _any(path, cat.sitemap_patterns).alias("is_sitemap"),
        # A WordPress shop's own scripts and styles (/wp-includes/…js) and its AJAX endpoint
        # are what every shopper's browser loads: probes are the other requests.
        (_any(path, cat.probe_patterns) & ~is_asset & ~background).alias("is_probe"),
        _any(path, cat.attack_patterns).alias("_attack_path"),
    )


def query_flags(queries: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """Query-string flags for each distinct query."""
    cat = cfg.catalogue
    query = pl.col("query")
    if cat.product_query_params:
        alt = "|".join(cat.product_query_params)
        product = query.str.extract(f"(?i)(?:^|&)(?:{alt})=([^&]+)", 1)
    else:
        product = pl.lit(None, pl.String)
    return queries.with_columns(
        product.alias("_product_query"),
        _param_present(query, cat.pagination_params).alias("is_paginated"),
        _param_present(query, cat.sort_filter_params).alias("is_sorted_filtered"),
        _any(query.fill_null(""), cat.attack_patterns).alias("_attack_query"),
    )


#: Path flags packed into one integer per distinct path, unpacked per hit by bit tests: a
#: join that carries one column instead of ten is three times cheaper.
_PATH_BITS = (
    "is_asset", "is_background", "is_api", "is_listing", "is_cart", "is_checkout", "is_login", "is_robots",
    "is_sitemap", "is_probe", "_attack_path",
)
_QUERY_BITS = ("is_paginated", "is_sorted_filtered", "_attack_query")
_URL_SEED = 0x75726C73


def _packed(flags: pl.LazyFrame, col: str, bits: tuple[str, ...], product: str) -> pl.LazyFrame:
    """(64-bit hash of the URL part, bit mask, product key, trailing product number)."""
    mask = pl.sum_horizontal(
        [pl.col(b).cast(pl.UInt32) * (1 << i) for i, b in enumerate(bits)]
    ).cast(pl.UInt32)
    return flags.select(
        pl.col(f"_{col}_key"),
        mask.alias(f"_{col}_mask"),
        pl.col(product),
        pl.col(product).str.extract(r"(\d{1,15})$", 1).cast(pl.Int64, strict=False).alias(f"{product}_num"),
    )


def _bit(col: str, bits: tuple[str, ...], name: str) -> pl.Expr:
    return ((pl.col(col) & (1 << bits.index(name))) != 0).fill_null(False).alias(name)


class UrlFlagCache:
    """Packed path and query flags (``_packed`` rows) of the texts earlier batches held, by
    64-bit hash: a shop's pages, assets and queries come back batch after batch, and their
    patterns were half the flagging time. Holds up to ``limit`` rows per part; past that it
    starts again from the latest batch's new texts (a log of ever-new URLs keeps no more
    than that). Valid for one config: a new one needs a new cache."""

    def __init__(self, limit: int = 1 << 18) -> None:
        self.limit = limit
        self.known: dict[str, pl.DataFrame] = {}

    def flags(
        self, distinct: dict[str, pl.LazyFrame], compute: dict[str, Callable[[pl.LazyFrame], pl.LazyFrame]],
    ) -> dict[str, pl.DataFrame]:
        """Flags of each part's ``distinct`` texts (``_<part>_key``, text), ``compute``d for
        the ones not held yet; what is returned may hold other texts too."""
        todo = {
            part: compute[part](
                lf if part not in self.known
                else lf.join(self.known[part].lazy().select(f"_{part}_key"), on=f"_{part}_key", how="anti")
            )
            for part, lf in distinct.items()
        }
        out = {}
        for part, new in zip(todo, pl.collect_all(list(todo.values())), strict=True):
            held = self.known.get(part)
            out[part] = new if held is None else held if new.is_empty() else pl.concat([held, new])
            self.known[part] = out[part] if len(out[part]) <= self.limit else new
        return out


def flag_hits(hits: pl.DataFrame | pl.LazyFrame, cfg: Config, cache: UrlFlagCache | None = None) -> pl.LazyFrame:
    """Per-hit flags. URL patterns run once per distinct path and query (of the stream, with a
    ``cache``); each hit finds its path's and query's flags through a 64-bit hash of the text
    (one narrow join each)."""
    df = hits.collect() if isinstance(hits, pl.LazyFrame) else hits
    path, query = pl.col("path").fill_null(""), pl.col("query").fill_null("")
    # Each text is hashed once; the distinct values are found on the hashes (a hash table of
    # integers, not of strings) and the patterns run on one text per hash.
    keys = df.select(
        path.alias("path"), query.alias("query"),
        path.hash(seed=_URL_SEED).alias("_path_key"), query.hash(seed=_URL_SEED).alias("_query_key"),
    ).lazy()
    distinct = {
        "path": keys.select("path", "_path_key").unique(subset="_path_key", keep="any"),
        "query": keys.select("query", "_query_key").unique(subset="_query_key", keep="any"),
    }
    compute: dict[str, Callable[[pl.LazyFrame], pl.LazyFrame]] = {
        "path": lambda lf: _packed(path_flags(lf, cfg), "path", _PATH_BITS, "_product_path"),
        "query": lambda lf: _packed(query_flags(lf, cfg), "query", _QUERY_BITS, "_product_query"),
    }
    if cache is None:
        pf, qf = compute["path"](distinct["path"]), compute["query"](distinct["query"])
    else:
        known = cache.flags(distinct, compute)
        pf, qf = known["path"].lazy(), known["query"].lazy()
    found = pl.collect_all([
        keys.select("_path_key").join(pf, on="_path_key", how="left", maintain_order="left"),
        keys.select("_query_key").join(qf, on="_query_key", how="left", maintain_order="left"),
    ])
    lf = df.hstack([*found[0].drop("_path_key"), *found[1].drop("_query_key")]).lazy()
    status = pl.col("status")
    start, end = cfg.site.night_hours
    ts = pl.col("ts") if cfg.site.timezone == "UTC" else pl.col("ts").dt.convert_time_zone(cfg.site.timezone)
    hour = ts.dt.hour()
    night = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
    ok_protocol = pl.col("protocol").fill_null("HTTP/1.1").is_in(
        ["HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0"]
    )
    has_path_product = pl.col("_product_path").is_not_null()
    # A target such as "/p/1": a request, whatever the format says of its method.
    has_target = pl.col("path").str.starts_with("/").fill_null(False)
    return (
        lf.with_columns(
            *[_bit("_path_mask", _PATH_BITS, b) for b in _PATH_BITS if not b.startswith("_")],
            *[_bit("_query_mask", _QUERY_BITS, b) for b in _QUERY_BITS if not b.startswith("_")],
            client_key_expr(cfg).alias("client"),
            pl.coalesce("_product_path", "_product_query").alias("product_key"),
            (_bit("_path_mask", _PATH_BITS, "_attack_path") | _bit("_query_mask", _QUERY_BITS, "_attack_query")).alias("is_attack"),
            (pl.col("method") == "HEAD").fill_null(False).alias("is_head"),
            (pl.col("method") == "POST").fill_null(False).alias("is_post"),
            # Not HTTP, an HTTP version that does not exist, or a proxy CONNECT: tools, not shoppers.
            # A missing method with a proper target is a format that does not log the method
            # (only $request_uri, a JSON map without it), not a malformed request.
            (
                (pl.col("method").is_null() & ~has_target)
                | ~ok_protocol | (pl.col("method") == "CONNECT").fill_null(False)
            ).fill_null(True).alias("is_bad_request"),
            pl.col("referer").is_null().alias("no_referer"),
            status.is_between(400, 499).fill_null(False).alias("is_4xx"),
            (status == 404).fill_null(False).alias("is_404"),
            (status == 429).fill_null(False).alias("is_429"),
            (status >= 500).fill_null(False).alias("is_5xx"),
            night.fill_null(False).alias("is_night"),
            pl.when(has_path_product).then(pl.col("_product_path_num"))
            .otherwise(pl.col("_product_query_num")).alias("product_num"),
        )
        .drop("_path_mask", "_query_mask", "_product_path", "_product_query", "_product_path_num", "_product_query_num")
        # Later stages sort and group by client: a 64-bit key is much cheaper than the string.
        .with_columns(key_hash(pl.col("client")).alias("_ck"))
        # A page is what a person navigates to: a GET or HEAD that is neither an asset nor a
        # background request. Form posts, XHR writes and beacons count as requests only: a
        # tab's heartbeat every second is not a visitor reading a page a second.
        .with_columns(
            (
                ~pl.col("is_asset") & ~pl.col("is_background")
                & pl.col("method").is_in(["GET", "HEAD"]).fill_null(has_target)
            ).alias("is_page"),
        )
        .with_columns(
            (pl.col("product_key").is_not_null() & pl.col("is_page") & ~pl.col("is_api")).alias("is_product"),
            (pl.col("no_referer") & pl.col("is_page")).alias("no_referer_page"),
            (pl.col("is_post") & pl.col("is_login")).alias("is_login_post"),
        )
    )


#: What an inference adds to the ``catalogue`` config, by key (product_patterns,
#: product_query_params).
Inferred = dict[str, list[str]]


class Flagger:
    """``flag_hits`` for a stream, with the product patterns settled once for all of it: when
    the configured patterns miss the catalogue, the product shapes inferred from the first
    batch with page views enough (``product_shapes``) join the patterns for the rest of the
    stream. ``inferred``: None until settled (an incremental run passes on what an earlier
    run settled), then what was added ({} for nothing)."""

    def __init__(self, cfg: Config, inferred: Inferred | None = None) -> None:
        self.base = cfg
        self.cfg = cfg
        self.inferred: Inferred | None = None
        self.inference: ProductInference | None = None  # when this stream settled them
        self.cache = UrlFlagCache()
        if inferred is not None or not cfg.catalogue.infer_products.enabled:
            self._settle(inferred or {})

    def _settle(self, added: Inferred) -> None:
        self.inferred = {k: list(v) for k, v in added.items() if v}
        if self.inferred:
            cat = self.base.catalogue
            update = {k: [*getattr(cat, k), *v] for k, v in self.inferred.items()}
            self.cfg = self.base.model_copy(update={"catalogue": cat.model_copy(update=update)})
        self.cache = UrlFlagCache()  # the flags of this config from now on

    def __call__(self, hits: pl.DataFrame) -> pl.DataFrame:
        if self.inferred is not None:
            return flag_hits(hits, self.cfg, self.cache).collect()
        flagged = flag_hits(hits, self.cfg).collect()
        from botguard.features.product_shapes import infer_products

        inference = infer_products(flagged, self.base)
        if inference is None:
            return flagged  # too few page views to tell: the next batch (or run) will
        self.inference = inference
        self._settle(inference.settings)
        return flag_hits(hits, self.cfg, self.cache).collect() if self.inferred else flagged
