"""Product pages inferred from a log's URL shapes when the configured patterns miss the catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from botguard.cli.app import app
from botguard.config import Config, load_config
from botguard.features.hitflags import Flagger, flag_hits
from botguard.features.product_shapes import describe, infer_products
from botguard.ingest import Ingest
from botguard.pipeline import analyze

AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


def _log(paths: list[str], tmp: Path, name: str = "access.log", minute: int = 0) -> Path:
    """One combined line per path, from a few dozen addresses, a second apart."""
    lines = [
        f'203.0.113.{i % 40 + 1} - - [02/Mar/2026:10:{minute + i // 3600 % 60:02d}:{i % 60:02d} +0000] '
        f'"GET {p} HTTP/1.1" 200 5120 "-" "{AGENT}"'
        for i, p in enumerate(paths)
    ]
    path = tmp / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _flagged(paths: list[str], cfg: Config, tmp: Path) -> pl.DataFrame:
    batches = list(Ingest([str(_log(paths, tmp))], cfg).batches())
    return flag_hits(pl.concat(batches), cfg).collect()


def _slugs(n: int) -> list[str]:
    return [f"trail-runner-{k}-{c}" for k, c in zip(range(n), ["black", "blue", "red"] * n, strict=False)]


def test_a_catalogue_under_category_folders_is_one_shape_with_its_parents(cfg: Config, tmp_path: Path) -> None:
    products = [f"/mens/shoes/{s}" for s in _slugs(60)] + [f"/womens/shoes/{s}" for s in _slugs(50)]
    other = ["/", "/mens", "/womens", "/about-us", "/search?q=shoes", "/blog/new-season-arrivals"] * 20
    inference = infer_products(_flagged(products * 3 + other, cfg, tmp_path), cfg)
    assert inference is not None and inference.matched_share == 0
    assert len(inference.shapes) == 1
    shape = inference.shapes[0]
    assert shape.pages == 110 and shape.shape.endswith("/{slug}")
    assert shape.view_share == pytest.approx(330 / (330 + 100))  # of all page views but the home page
    for engine in (lambda p: re.search(shape.value, p), lambda p: pl.Series([p]).str.contains(shape.value)[0]):
        assert engine("/mens/shoes/trail-runner-7-red")
        assert engine("/womens/shoes/trail-runner-7-red/")
        assert not engine("/kids/shoes/trail-runner-7-red")  # a parent never seen is not assumed
        assert not engine("/mens/shoes")
    key = pl.Series(["/mens/shoes/trail-runner-7-red"]).str.extract(shape.value, 1)[0]
    assert key == "trail-runner-7-red"


def test_ids_under_many_parents_make_a_pattern_of_that_depth(cfg: Config, tmp_path: Path) -> None:
    # Salesforce Commerce Cloud's '/en-us/<name>/<id>.html': one parent per product.
    products = [f"/en-us/linen-shirt-{k}/{40000 + k}.html" for k in range(80)]
    inference = infer_products(_flagged(products * 4, cfg, tmp_path), cfg)
    assert inference is not None and [s.shape for s in inference.shapes] == ["/*/*/{id}.html"]
    [pattern] = inference.settings["product_patterns"]
    assert re.search(pattern, "/de-de/other-name/99999.html")
    assert not re.search(pattern, "/de-de/99999.html")
    assert not re.search(pattern, "/de-de/other-name/linen.html")


def test_a_shop_whose_patterns_key_its_products_infers_nothing(cfg: Config, tmp_path: Path) -> None:
    # A recipe blog beside the catalogue is a shape too, but smaller than what the patterns key.
    products = [f"/products/{s}" for s in _slugs(100)]
    recipes = [f"/recipes/{s}" for s in _slugs(60)]
    inference = infer_products(_flagged(products * 3 + recipes, cfg, tmp_path), cfg)
    assert inference is not None
    assert inference.matched_share == pytest.approx(300 / 360)
    assert inference.shapes == []


def test_collections_read_more_than_the_products_they_list_are_not_a_catalogue(cfg: Config, tmp_path: Path) -> None:
    # A Shopify shop: 50 collections (listing pages with slug names) viewed more often than
    # its 300 products; the collections are fewer than the products the patterns key.
    collections = [f"/collections/{s}" for s in _slugs(50)] * 8
    products = [f"/products/{s}-x" for s in _slugs(300)]
    inference = infer_products(_flagged(collections + products, cfg, tmp_path), cfg)
    assert inference is not None and inference.matched_share == pytest.approx(300 / 700)
    assert inference.shapes == []


def test_product_ids_in_a_query_string_name_their_parameter(cfg: Config, tmp_path: Path) -> None:
    products = [f"/product?id={1000 + k}&utm_source=mail" for k in range(90)]
    # Pages of a listing and searches have many values too, but they are no product ids.
    listing = [f"/shoes?page={k}&sort=price" for k in range(60)] + [f"/find?q=red-shoe-{k}" for k in range(60)]
    flagged = _flagged(products * 3 + listing, cfg, tmp_path)
    inference = infer_products(flagged, cfg)
    assert inference is not None
    assert [(s.key, s.value, s.shape, s.pages) for s in inference.shapes] == [
        ("product_query_params", "id", "/product?id={id}", 90)
    ]
    flagger = Flagger(cfg, inferred=inference.settings)
    keyed = flagger(pl.concat(list(Ingest([str(_log(products, tmp_path, "p.log"))], cfg).batches())))
    assert keyed["is_product"].all() and keyed["product_key"].n_unique() == 90
    assert "query parameter 'id'" in describe(inference) and "catalogue.product_query_params" in describe(inference)


def test_too_few_page_views_say_nothing_yet(cfg: Config, tmp_path: Path) -> None:
    products = [f"/mens/shoes/{s}" for s in _slugs(100)]
    assert infer_products(_flagged(products, cfg, tmp_path), cfg) is None  # 100 < min_page_views


def test_parents_with_regex_characters_are_literals_in_both_engines(cfg: Config, tmp_path: Path) -> None:
    products = [f"/c++/v1.0/{s}" for s in _slugs(60)] + [f"/c++/v2.0/{s}" for s in _slugs(60)]
    inference = infer_products(_flagged(products * 3, cfg, tmp_path), cfg)
    assert inference is not None
    [pattern] = inference.settings["product_patterns"]
    for path, expected in [("/c++/v1.0/trail-runner-3-black", True), ("/cxx/v1x0/trail-runner-3-black", False),
                           ("/c++/v2.0/a-b", True), ("/c+/v2.0/a-b", False)]:
        assert bool(re.search(pattern, path)) is expected, path
        assert pl.Series([path]).str.contains(pattern)[0] is expected, path


def test_flagger_settles_once_and_can_be_turned_off(cfg: Config, tmp_path: Path) -> None:
    products = [f"/mens/shoes/{s}" for s in _slugs(80)]
    small = pl.concat(list(Ingest([str(_log(products, tmp_path, "a.log"))], cfg).batches()))
    big = pl.concat(list(Ingest([str(_log(products * 5, tmp_path, "b.log"))], cfg).batches()))
    flagger = Flagger(cfg)
    first = flagger(small)
    assert flagger.inferred is None and first["is_product"].sum() == 0  # not settled on 80 views
    second = flagger(big)
    assert flagger.inferred is not None and len(flagger.inferred["product_patterns"]) == 1
    assert second["is_product"].all()
    assert flagger(small)["is_product"].all()  # settled for the rest of the stream

    (tmp_path / "off.yaml").write_text("catalogue:\n  infer_products:\n    enabled: false\n")
    off = load_config(tmp_path / "off.yaml")
    quiet = Flagger(off)
    assert quiet.inferred == {} and quiet(big)["is_product"].sum() == 0
    # What an earlier run settled is used from the first batch.
    carried = Flagger(cfg, inferred=flagger.inferred)
    assert carried(small)["is_product"].all()


def test_an_incremental_run_keeps_the_shapes_an_earlier_run_inferred(cfg: Config, tmp_path: Path) -> None:
    products = [f"/mens/shoes/{s}" for s in _slugs(80)]
    log = _log(products * 5, tmp_path)
    first = analyze([str(log)], cfg, out_dir=tmp_path / "one", state_path=tmp_path / "state.db", incremental=True)
    assert len(first.summary["inferred_products"]["product_patterns"]) == 1
    assert any("inferred from the log's URL shapes" in w for w in first.warnings)
    with log.open("a") as fh:  # a few more lines: too few to infer from on their own
        fh.write(_log(products[:10], tmp_path, "more.log", minute=30).read_text())
    second = analyze([str(log)], cfg, out_dir=tmp_path / "two", state_path=tmp_path / "state.db", incremental=True)
    assert second.summary["inferred_products"] == first.summary["inferred_products"]
    clients = pl.read_parquet(tmp_path / "two" / "features.parquet")
    assert int(clients["product_pages"].sum()) == 410


def _rewrite_products(log: Path, out: Path) -> None:
    """The classic layout's '/p/<id>' product pages as '/mens/footwear/sneaker-<id>-black'."""
    text = re.sub(r'"(GET|HEAD) /p/(\d+)', r'"\1 /mens/footwear/sneaker-\2-black', log.read_text())
    out.write_text(text)


def test_a_swarm_on_a_catalogue_the_patterns_miss_is_caught(tmp_path: Path) -> None:
    """End to end: a simulated shop whose product URLs no default pattern knows. Without the
    inference the swarm sharing out the catalogue goes unseen; with it, it is blocked."""
    from botguard.model.build import EVAL_SEED, TRAIN_SEEDS
    from botguard.simulate import LAYOUTS, simulate

    seed = 4241
    assert seed not in (*TRAIN_SEEDS, EVAL_SEED) and LAYOUTS[seed % len(LAYOUTS)].name == "classic"
    sim = simulate(tmp_path / "sim", seed=seed, hours=8, clients=400)
    log = tmp_path / "custom.log"
    _rewrite_products(sim.log_path, log)
    (tmp_path / "off.yaml").write_text("catalogue:\n  infer_products:\n    enabled: false\n")
    runner = CliRunner()
    env = {"BOTGUARD_DATA": str(tmp_path / "data")}
    assert runner.invoke(app, ["ranges", "update", "--from", str(sim.ranges_dir)], env=env).exit_code == 0
    labels = pl.read_csv(sim.labels_path).rename({"ip": "client"})
    swarm_blocked, humans_flagged = {}, {}
    for name, extra in (("on", []), ("off", ["-c", str(tmp_path / "off.yaml")])):
        res = runner.invoke(app, ["analyze", str(log), "--out", str(tmp_path / name), "--quiet", "--force", *extra], env=env)
        assert res.exit_code == 0, res.output
        d = pl.read_ndjson(tmp_path / name / "decisions.jsonl", infer_schema_length=None).join(labels, on="client")
        kind = "kind_right" if "kind_right" in d.columns else "kind"
        swarm_blocked[name] = float(d.filter(pl.col(kind) == "swarm")["action"].eq("block").mean() or 0)
        humans_flagged[name] = int(d.filter(pl.col("label") == "human")["action"].is_in(["block", "challenge"]).sum())
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        if name == "on":
            [pattern] = summary["inferred_products"]["product_patterns"]
            assert re.search(pattern, "/mens/footwear/sneaker-1234-black")
            assert any("/mens/footwear/{slug}" in w for w in summary["warnings"])
        else:
            assert summary["inferred_products"] == {}
    assert swarm_blocked["on"] >= 0.9 and swarm_blocked["off"] <= 0.5, swarm_blocked
    assert humans_flagged == {"on": 0, "off": 0}


def test_library_sessionize_flags_like_the_pipeline(cfg: Config, tmp_path: Path) -> None:
    from botguard.sessionize import sessionize

    products = [f"/mens/shoes/{s}" for s in _slugs(80)]
    hits = pl.concat(list(Ingest([str(_log(products * 5, tmp_path))], cfg).batches()))
    assert sessionize(hits, cfg)["is_product"].all()
