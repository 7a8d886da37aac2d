"""URL layouts of common shop software, so simulated traffic does not teach one URL scheme.

A detector that learned "product pages live under ``/products/``" would fail on the next shop;
each seed therefore picks one of these layouts (``seed % len(LAYOUTS)``), and everything that
requests a page asks the layout for the URL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    slot: int  # position in the id range; slots of missing ids have no product page
    id: int
    handle: str
    sku: str
    asin: str


class Layout:
    """URL scheme of one kind of shop. Subclasses override the URL builders."""

    name = "base"
    numeric_ids = False  # ids in URLs, so sequential-id walks are visible (and hit gaps)
    id_base = 1
    sorts: tuple[str, ...] = ("",)
    per_page = 24
    login = "/account/login"
    account = "/account"
    content: tuple[str, ...] = ()
    core: tuple[str, ...] = ()
    feed = "/feed.xml"  # news/new-arrivals feed that feed readers poll

    def product(self, p: Product) -> str:
        raise NotImplementedError

    def legacy(self, p: Product) -> str:
        """An old URL of the product that now answers 301 (search engines still know it)."""
        raise NotImplementedError

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        raise NotImplementedError

    def search(self, term: str, page: int) -> str:
        raise NotImplementedError

    def image(self, p: Product, k: int) -> str:
        raise NotImplementedError

    def poll(self, p: Product) -> tuple[str, ...]:
        """Price/stock endpoints a price poller hits instead of the product page."""
        raise NotImplementedError

    def sitemaps(self, n_products: int) -> tuple[str, ...]:
        return ("/sitemap.xml",)

    def dead(self) -> tuple[str, ...]:
        """Links people still follow that lead nowhere (old campaigns, typos)."""
        return ()


def _query(**params: str | int) -> str:
    pairs = [f"{k}={v}" for k, v in params.items() if v not in ("", 1) or k == "q"]
    return ("?" + "&".join(pairs)) if pairs else ""


class ShopifyLayout(Layout):
    name = "shopify"
    feed = "/blogs/news.atom"
    sorts = ("", "price-ascending", "price-descending", "created-descending", "best-selling")
    content = (
        "/pages/about-us",
        "/pages/shipping-returns",
        "/pages/contact",
        "/pages/size-guide",
        "/blogs/news",
        "/policies/privacy-policy",
    )
    core = (
        "/cdn/shop/t/14/assets/base.css?v=146380823118546473",
        "/cdn/shop/t/14/assets/component-card.css?v=120341546515895839",
        "/cdn/shop/t/14/assets/global.js?v=84921000938412740",
        "/cdn/shop/t/14/assets/vendor.js?v=32950428375411622",
        "/cdn/shop/t/14/assets/product-form.js?v=82553749319723712",
        "/cdn/fonts/assistant/assistant_n4.9120912a469cad1cc292572851508ca49d12e768.woff2",
        "/cdn/fonts/assistant/assistant_n7.bf44452348ec8b8efa3aa3068825305886b1c83c.woff2",
        "/cdn/shop/files/logo.svg?v=1701234567",
        "/cdn/shop/t/14/assets/icon-cart.svg",
        "/favicon.ico",
    )

    def product(self, p: Product) -> str:
        return f"/products/{p.handle}"

    def legacy(self, p: Product) -> str:
        return f"/collections/all/products/{p.handle}-{p.id}"

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        return f"/collections/{slug}" + _query(sort_by=sort, page=page)

    def search(self, term: str, page: int) -> str:
        return "/search" + _query(q=term, type="product", page=page)

    def image(self, p: Product, k: int) -> str:
        version = 1700000000 + p.id * 7 % 9999999
        return f"/cdn/shop/files/{p.handle}-{k + 1}.jpg?v={version}&width=800"

    def poll(self, p: Product) -> tuple[str, ...]:
        return (f"/products/{p.handle}.json", f"/products/{p.handle}.js")

    def sitemaps(self, n_products: int) -> tuple[str, ...]:
        pages = (n_products + 4999) // 5000
        products = tuple(
            f"/sitemap_products_{i + 1}.xml?from={i * 5000 + 1}&to={(i + 1) * 5000}"
            for i in range(pages)
        )
        return ("/sitemap.xml", *products, "/sitemap_collections_1.xml", "/sitemap_pages_1.xml")

    def dead(self) -> tuple[str, ...]:
        return ("/products/gift-card-2023", "/collections/black-friday", "/pages/careers",
                "/discount/WELCOME10X", "/collections/summer-sale-2024")


class ClassicLayout(Layout):
    name = "classic"
    numeric_ids = True
    id_base = 1001
    sorts = ("", "price", "price_desc", "newest", "rating")
    login = "/login"
    account = "/account/orders"
    content = ("/about", "/shipping", "/returns", "/faq", "/contact", "/imprint")
    core = (
        "/static/css/app.4f3a9c21.css",
        "/static/js/runtime.7c1e2b0d.js",
        "/static/js/vendor.a91f3d55.js",
        "/static/js/app.0e8d5c7a.js",
        "/static/fonts/inter-var.woff2",
        "/static/img/logo.svg",
        "/static/img/sprite.svg",
        "/favicon.ico",
    )

    def product(self, p: Product) -> str:
        return f"/p/{p.id}"

    def legacy(self, p: Product) -> str:
        return f"/product.php?id={p.id}"

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        return f"/c/{slug}" + _query(page=page, sort=sort)

    def search(self, term: str, page: int) -> str:
        return "/search" + _query(q=term, page=page)

    def image(self, p: Product, k: int) -> str:
        return f"/static/img/products/{p.id}/{k + 1}_800.webp"

    def poll(self, p: Product) -> tuple[str, ...]:
        return (f"/api/v1/products/{p.id}/price", f"/api/v1/products/{p.id}/stock",
                f"/api/v1/products/{p.id}")

    def sitemaps(self, n_products: int) -> tuple[str, ...]:
        return ("/sitemap.xml", "/sitemap-products-1.xml", "/sitemap-categories.xml")

    def dead(self) -> tuple[str, ...]:
        return ("/p/99", "/c/outlet-2023", "/newsletter/confirm", "/angebote/winter",
                "/gutschein")


class ItemHtmlLayout(Layout):
    name = "item_html"
    feed = "/rss/news.xml"
    numeric_ids = True
    id_base = 20417
    sorts = ("", "price_asc", "price_desc", "newest", "popular")
    per_page = 30
    login = "/member/login.html"
    account = "/member/index.html"
    content = ("/help/shipping.html", "/help/payment.html", "/company.html", "/contact.html",
               "/news.html")
    core = (
        "/css/style.min.css?ver=3.2.1",
        "/css/item.min.css?ver=3.2.1",
        "/js/jquery-3.7.1.min.js",
        "/js/common.min.js?ver=3.2.1",
        "/fonts/roboto-v30-latin-regular.woff2",
        "/images/logo.png",
        "/images/icons.png",
        "/favicon.ico",
    )

    def product(self, p: Product) -> str:
        return f"/item/{p.id}.html"

    def legacy(self, p: Product) -> str:
        return f"/goods.php?id={p.id}"

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        return f"/category/{slug}.html" + _query(pg=page, order=sort)

    def search(self, term: str, page: int) -> str:
        return "/search.html" + _query(keyword=term, pg=page)

    def image(self, p: Product, k: int) -> str:
        return f"/images/items/{p.id}/{p.id}_{k + 1}.jpg"

    def poll(self, p: Product) -> tuple[str, ...]:
        return (f"/ajax/price?sku={p.sku}", f"/ajax/stock?sku={p.sku}")

    def sitemaps(self, n_products: int) -> tuple[str, ...]:
        return ("/sitemap.xml", "/sitemap_item_1.xml.gz", "/sitemap_category.xml.gz")

    def dead(self) -> tuple[str, ...]:
        return ("/item/1.html", "/campaign/spring2024.html", "/campaign/summer2023.html",
                "/member/regist.html")


class SlugIdLayout(Layout):
    name = "slug_p_id"
    feed = "/rss.php"
    numeric_ids = True
    id_base = 152
    sorts = ("", "2a", "2d", "3a", "3d")
    per_page = 20
    login = "/login.php"
    account = "/account.php"
    content = ("/shipping.php", "/privacy.php", "/conditions.php", "/contact_us.php")
    core = (
        "/templates/responsive/css/stylesheet.css",
        "/templates/responsive/css/bootstrap.min.css",
        "/ext/jquery/jquery-3.6.0.min.js",
        "/ext/bootstrap/js/bootstrap.min.js",
        "/templates/responsive/js/general.js",
        "/images/store_logo.png",
        "/favicon.ico",
    )

    def product(self, p: Product) -> str:
        return f"/{p.handle}-p-{p.id}.html"

    def legacy(self, p: Product) -> str:
        return f"/product_info.php?products_id={p.id}"

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        return f"/{slug}-c-{number}.html" + _query(page=page, sort=sort)

    def search(self, term: str, page: int) -> str:
        return "/advanced_search_result.php" + _query(keywords=term, page=page)

    def image(self, p: Product, k: int) -> str:
        return f"/images/products/{p.handle}-{p.id}-{k + 1}.jpg"

    def poll(self, p: Product) -> tuple[str, ...]:
        return (f"/api/price?sku={p.sku}", f"/index.php?route=product/stock&sku={p.sku}")

    def dead(self) -> tuple[str, ...]:
        return ("/specials.php?page=7", "/gift-vouchers-c-99.html", "/newsletter.php?id=2023",
                "/create_account.php?ref=mail")


class MarketplaceLayout(Layout):
    name = "dp"
    feed = "/rss/new-releases.xml"
    sorts = ("", "price-asc-rank", "price-desc-rank", "review-rank", "date-desc-rank")
    per_page = 48
    login = "/ap/signin"
    account = "/gp/css/homepage.html"
    content = ("/gp/help/customer/display.html", "/gp/help/shipping.html", "/about",
               "/conditions-of-use")
    core = (
        "/static/css/site.3c2d1f.css",
        "/static/css/detail.77a0be.css",
        "/static/js/site.9b1e44.js",
        "/static/js/detail.51fd0a.js",
        "/static/js/recs.c8d712.js",
        "/static/fonts/ember-regular.woff2",
        "/static/img/nav-logo.svg",
        "/favicon.ico",
    )

    def product(self, p: Product) -> str:
        return f"/dp/{p.asin}"

    def legacy(self, p: Product) -> str:
        return f"/gp/product/{p.asin}"

    def category(self, slug: str, number: int, page: int, sort: str) -> str:
        return f"/b/{slug}" + _query(node=str(2400000 + number * 37), page=page, s=sort)

    def search(self, term: str, page: int) -> str:
        return "/s" + _query(k=term, page=page)

    def image(self, p: Product, k: int) -> str:
        return f"/images/I/{p.asin[2:]}{'LRS'[k % 3]}{p.id % 97:02d}._AC_SL1500_.jpg"

    def poll(self, p: Product) -> tuple[str, ...]:
        return (f"/api/v1/offers/{p.asin}/price", f"/gp/product/ajax/stock?asin={p.asin}")

    def dead(self) -> tuple[str, ...]:
        return ("/dp/B000000000", "/deals/prime-day-2024", "/gp/coupon/XMAS", "/b/outlet")


LAYOUTS: tuple[Layout, ...] = (
    ShopifyLayout(),
    ClassicLayout(),
    ItemHtmlLayout(),
    SlugIdLayout(),
    MarketplaceLayout(),
)
