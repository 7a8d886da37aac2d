"""Product pages inferred from a log's own URL shapes, for shops the configured patterns miss.

Most catalogue evidence reads the product key: coverage, sequential walks, revisits, the swarm
that shares the catalogue out between addresses. A shop whose product pages are
'/mens/shoes/air-runner-2' would have none of it, and lose most of its scraper detection without
a word. So the paths of a batch's page views that no pattern keys are cut into parent and last
segment; a last segment that is an id ('48213', 'B08N5WRWNW') or a slug ('air-runner-2') gives
the path a shape: (depth, id or slug, extension). A shop's categories and content pages are a
few dozen; its products are the one shape with many distinct pages and a large share of the
views, more of both than the patterns key. That shape becomes a regular expression (its parent
paths listed when they are few, any parents of its depth otherwise) that is then used as a
configured product pattern would be; a query parameter with such values ('/product?id=48213')
becomes a product query parameter.

All the work is per distinct path, in Polars expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from botguard.config.models import Config, ProductInferenceConfig
from botguard.features.hitflags import _any

#: A last segment that names one thing: an id holds a digit and nothing but letters and digits;
#: a slug is two words or more joined by '-', '_' or '+'.
_ID = r"[A-Za-z0-9]*\d[A-Za-z0-9]*"
_SLUG = r"[A-Za-z0-9%]+(?:[-_+][A-Za-z0-9%]+)+"
_STEM = {"id": _ID, "slug": _SLUG}
_EXT = r"(?i)(\.(?:html?|php|aspx?|jsp|p))$"
#: Listed parents at most; a shape spread over more is matched at its depth, whatever the parents.
_MAX_PARENTS = 20
_NUMBER = "{n}"
#: Query parameters that are never a product id, beside the configured page, sort and filter ones.
_NOT_IDS = frozenset({
    "q", "query", "s", "search", "term", "keyword", "keywords", "ref", "lang", "locale", "currency",
    "gclid", "fbclid", "msclkid", "sid", "sessionid", "session_id", "v", "ver", "version", "t", "ts", "_",
    "cb", "callback", "token", "redirect", "return", "returnurl", "return_url", "next", "url",
})
_SPECIAL = frozenset(".^$*+?()[]{}|\\")


@dataclass(frozen=True)
class ProductShape:
    """One inferred shape: what it adds to the catalogue config (a product pattern, or a
    product query parameter), how it reads ('/shoes/{slug}', '/product?id={id}'), its
    distinct pages and share of the candidate page views in the batch it was inferred from."""

    key: str  # "product_patterns" or "product_query_params"
    value: str
    shape: str
    pages: int
    view_share: float


@dataclass(frozen=True)
class ProductInference:
    """What a batch said: the share of its candidate page views the patterns key, and the
    shapes they miss (empty when no shape is larger than what they key)."""

    matched_share: float
    page_views: int
    shapes: list[ProductShape] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, list[str]]:
        """What the shapes add to the ``catalogue`` config, by key."""
        out: dict[str, list[str]] = {"product_patterns": [], "product_query_params": []}
        for s in self.shapes:
            if s.value not in out[s.key]:
                out[s.key].append(s.value)
        return out


def _candidates(flagged: pl.DataFrame) -> pl.DataFrame:
    """Views of pages a product could be: answered, and no cart, API, probe … Listing pages
    are candidates: '/shop/<slug>' and '/catalog/<id>' name products in many shops, and a
    shop's categories are too few to make a shape."""
    others = ["is_api", "is_cart", "is_checkout", "is_login", "is_robots", "is_sitemap",
              "is_probe", "is_attack", "is_bad_request"]
    keep = pl.col("is_page") & pl.col("status").is_between(200, 399).fill_null(False)
    for name in others:
        keep = keep & ~pl.col(name)
    return flagged.filter(keep & (pl.col("path").fill_null("/") != "/")).select("path", "query", "product_key")


def _shapes(paths: pl.DataFrame) -> pl.DataFrame:
    """Per distinct path (with its ``views``): parent (numbers as {n}), depth, kind, extension."""
    trimmed = pl.col("path").str.replace(r"/+$", "")
    df = paths.with_columns(trimmed.alias("_p")).filter(pl.col("_p").str.starts_with("/"))
    df = df.with_columns(
        pl.col("_p").str.extract(r"^(.*)/[^/]*$", 1).alias("_parent"),
        pl.col("_p").str.extract(r"/([^/]*)$", 1).alias("_last"),
    ).with_columns(
        pl.col("_last").str.extract(_EXT, 1).str.to_lowercase().fill_null("").alias("ext"),
    ).with_columns(
        pl.col("_last").str.slice(0, pl.col("_last").str.len_chars() - pl.col("ext").str.len_chars()).alias("_stem"),
    )
    segments = pl.col("_parent").str.split("/").list.eval(
        pl.when(pl.element().str.contains(r"^\d+$")).then(pl.lit(_NUMBER)).otherwise(pl.element())
    )
    return df.with_columns(
        pl.when(pl.col("_stem").str.contains(f"^{_ID}$")).then(pl.lit("id"))
        .when(pl.col("_stem").str.contains(f"^{_SLUG}$")).then(pl.lit("slug"))
        .otherwise(None).alias("kind"),
        segments.list.join("/").alias("parent"),
        (segments.list.len() - 1).alias("depth"),
    ).filter(pl.col("kind").is_not_null()).select("path", "views", "parent", "depth", "kind", "ext")


def _escape(text: str) -> str:
    """A literal for both Python's and Rust's regex engines, '{n}' standing for a number."""
    return r"\d+".join("".join("\\" + c if c in _SPECIAL else c for c in part) for part in text.split(_NUMBER))


def _pattern(parents: list[str], depth: int, kind: str, ext: str) -> tuple[str, str]:
    """(regular expression, how it reads) of a shape."""
    if len(parents) > _MAX_PARENTS:
        head, shown = r"(?:/[^/?#;]+)" + (f"{{{depth}}}" if depth != 1 else ""), "/*" * depth
    elif len(parents) == 1:
        head, shown = _escape(parents[0]), parents[0]
    else:
        head = "(?:" + "|".join(_escape(p) for p in sorted(parents)) + ")"
        shown = f"{parents[0]} (+{len(parents) - 1} more parents)"
    tail = _escape(ext) if ext else ""
    return f"(?i)^{head}/({_STEM[kind]}){tail}/?$", f"{shown}/{{{kind}}}{ext}"


@dataclass(frozen=True)
class _Bar:
    """What a shape must exceed to be the catalogue: many distinct pages, a share of the page
    views, and more of both than the patterns key."""

    spec: ProductInferenceConfig
    total: int  # candidate page views
    matched: float  # share of them the patterns key
    keyed_products: int  # distinct products the patterns key

    def expr(self) -> pl.Expr:
        return (
            (pl.col("pages") >= self.spec.min_products)
            & (pl.col("pages") > self.keyed_products)
            & (pl.col("views") >= self.spec.min_view_share * self.total)
            & (pl.col("views") > self.matched * self.total)
        )


def infer_products(flagged: pl.DataFrame, cfg: Config) -> ProductInference | None:
    """The product shapes of a flagged batch (``hitflags.flag_hits`` under the configured
    patterns), or None when it holds too few page views to say."""
    cat = cfg.catalogue
    spec = cat.infer_products
    views = _candidates(flagged)
    if len(views) < spec.min_page_views:
        return None
    keyed = views["product_key"].is_not_null()
    matched = float(keyed.mean() or 0.0)  # type: ignore[arg-type]
    total = len(views)
    bar = _Bar(spec, total, matched, int(views.filter(keyed)["product_key"].n_unique()))
    # Shapes of the pages the patterns do not key: the catalogue they miss is larger than
    # what they key, in views and in distinct pages (a shop's blog, help or collection pages
    # are not).
    views = views.filter(~keyed).filter(~_any(pl.col("path"), cat.non_product_patterns))
    not_ids = {p.lower() for p in (*cat.pagination_params, *cat.sort_filter_params, *cat.product_query_params)}
    found = _path_shapes(views, bar)
    found += _query_shapes(views.filter(pl.col("query").fill_null("") != ""), bar, not_ids)
    found.sort(key=lambda s: (-s.view_share, -s.pages, s.shape))
    return ProductInference(matched_share=matched, page_views=total, shapes=found[: spec.max_patterns])


def _path_shapes(views: pl.DataFrame, bar: _Bar) -> list[ProductShape]:
    shapes = _shapes(views.group_by("path").agg(pl.len().alias("views")))
    found = (
        shapes.group_by("depth", "kind", "ext")
        .agg(pl.len().alias("pages"), pl.col("views").sum())
        .filter(bar.expr())
    )
    out: list[ProductShape] = []
    for depth, kind, ext, pages, n_views in found.iter_rows():
        parents = (
            shapes.filter((pl.col("depth") == depth) & (pl.col("kind") == kind) & (pl.col("ext") == ext))
            .group_by("parent").agg(pl.len().alias("pages"))
            .sort(["pages", "parent"], descending=[True, False])["parent"].to_list()
        )
        pattern, shape = _pattern(parents, depth, kind, ext)
        out.append(ProductShape("product_patterns", pattern, shape, pages, n_views / bar.total))
    return out


def _query_shapes(views: pl.DataFrame, bar: _Bar, not_ids: set[str]) -> list[ProductShape]:
    """'/product?id=48213': a parameter whose id or slug values are many on one path. The
    parameter then keys products on every path, as ``product_query_params`` do. Pages,
    sorts, filters, searches and trackers are never product ids."""
    pairs = (
        views.group_by("path", "query").agg(pl.len().alias("views"))
        .with_columns(pl.col("query").str.split("&").alias("_kv")).explode("_kv")
        .with_columns(
            pl.col("_kv").str.extract(r"^([A-Za-z_][A-Za-z0-9_.-]*)=", 1).str.to_lowercase().alias("param"),
            pl.col("_kv").str.extract(r"=(.*)$", 1).alias("value"),
        )
        .filter(
            pl.col("value").str.contains(f"^(?:{_ID}|{_SLUG})$").fill_null(False)
            & ~pl.col("param").is_in(list(not_ids | _NOT_IDS)).fill_null(True)
            & ~pl.col("param").str.starts_with("utm_").fill_null(True)
        )
    )
    found = (
        pairs.group_by("path", "param")
        .agg(pl.col("value").n_unique().alias("pages"), pl.col("views").sum())
        .filter(bar.expr())
        .sort(["views", "path", "param"], descending=[True, False, False])
    )
    return [
        ProductShape("product_query_params", param, f"{path}?{param}={{id}}", pages, n_views / bar.total)
        for path, param, pages, n_views in found.iter_rows()
    ]


def describe(inference: ProductInference) -> str:
    """The run's warning: what was inferred and how to make it the shop's own setting."""
    shapes = "; ".join(
        f"{s.shape} ({s.pages:,} pages, {s.view_share:.0%} of page views): "
        + (f"pattern '{s.value}'" if s.key == "product_patterns" else f"query parameter '{s.value}'")
        for s in inference.shapes
    )
    keys = " and ".join(f"catalogue.{k}" for k, v in inference.settings.items() if v)
    return (
        f"catalogue.product_patterns keyed {inference.matched_share:.0%} of {inference.page_views:,} page views, "
        f"so the product pages were inferred from the log's URL shapes: {shapes}. Add them to {keys} to keep "
        "them, or set catalogue.infer_products.enabled: false"
    )
