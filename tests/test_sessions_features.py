"""Sessionizer invariants, golden feature values on a tiny hand-written log, HLL accuracy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from botguard.config import load_config
from botguard.features import build_features, sketches
from botguard.features.hitflags import UrlFlagCache, flag_hits
from botguard.schema import CLIENT_FEATURES_SCHEMA, HITS_SCHEMA, SESSION_FEATURES_SCHEMA, check
from botguard.sessionize import sessionize, sessionize_stream

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def hits_frame(rows: list[tuple[str, float, str]], ua: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0") -> pl.DataFrame:
    """(ip, seconds after T0, path) → a hits frame conforming to HITS_SCHEMA."""
    data = {
        "ts": [T0 + timedelta(seconds=s) for _, s, _ in rows],
        "client_ip": [ip for ip, _, _ in rows],
        "method": ["GET"] * len(rows),
        "path": [p.split("?")[0] for _, _, p in rows],
        "query": [p.split("?", 1)[1] if "?" in p else None for _, _, p in rows],
        "protocol": ["HTTP/1.1"] * len(rows),
        "status": [200] * len(rows),
        "bytes": [100] * len(rows),
        "referer": [None] * len(rows),
        "user_agent": [ua] * len(rows),
        "source": ["t"] * len(rows),
        "line_no": list(range(1, len(rows) + 1)),
    }
    df = pl.DataFrame(data)
    return df.select([(pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c) for c, t in HITS_SCHEMA.items()])


@pytest.fixture(scope="module")
def cfg():  # type: ignore[no-untyped-def]
    return load_config()


def test_gap_splits_sessions(cfg) -> None:  # type: ignore[no-untyped-def]
    rows = [("1.1.1.1", 0, "/a"), ("1.1.1.1", 60, "/b"), ("1.1.1.1", 60 + 1801, "/c"), ("2.2.2.2", 10, "/a")]
    out = sessionize(hits_frame(rows), cfg)
    got = out.sort("client", "ts").select("client", "session_no").rows()
    assert got == [("1.1.1.1", 0), ("1.1.1.1", 0), ("1.1.1.1", 1), ("2.2.2.2", 0)]


hit_rows = st.lists(
    st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1"]), st.integers(0, 20_000), st.sampled_from(["/p/1", "/p/2", "/x.css", "/"])),
    min_size=1, max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=hit_rows, seed=st.integers(0, 1000))
def test_sessionizing_ignores_input_order_and_assigns_every_hit_once(cfg, rows, seed) -> None:  # type: ignore[no-untyped-def]
    df = hits_frame(rows)
    a = sessionize(df, cfg).sort("line_no").select("line_no", "client", "session_no")
    b = sessionize(df.sample(fraction=1.0, shuffle=True, seed=seed), cfg).sort("line_no").select("line_no", "client", "session_no")
    assert a.equals(b)
    assert a["line_no"].n_unique() == len(df) == len(a)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=hit_rows, size=st.integers(1, 15))
# Two hits in the same second: their sample rows kept input order only by chance (a join).
@example(rows=[("10.0.0.2", 3491, "/"), ("10.0.0.2", 741, "/"), ("10.0.0.2", 3491, "/")], size=1)
def test_features_do_not_depend_on_batch_size(cfg, rows, size) -> None:  # type: ignore[no-untyped-def]
    df = hits_frame(sorted(rows, key=lambda r: r[1]))
    whole = build_features([df], cfg, ranges=_no_ranges(cfg))
    parts = [df.slice(i, size) for i in range(0, len(df), size)]
    batched = build_features(parts, cfg, ranges=_no_ranges(cfg))
    # Float sums may differ in the last bits with summation order; everything else is exact.
    assert_frame_equal(whole.clients, batched.clients, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert_frame_equal(whole.sessions, batched.sessions, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    # Each client's first five hits, whatever batch they came in.
    first = df.sort("ts", "line_no").group_by("client_ip", maintain_order=True).head(5)
    assert sorted(batched.samples["line_no"].to_list()) == sorted(first["line_no"].to_list())
    assert_frame_equal(whole.samples, batched.samples)
    assert batched.samples["user_agent"].null_count() == 0


def test_agents_first_seen_in_later_batches_are_parsed_too(cfg) -> None:  # type: ignore[no-untyped-def]
    """The agent table is begun on the first batch's agents: the agents later batches bring
    (and a missing agent) must still be parsed, as they are when the log is one batch."""
    browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
    parts = [
        hits_frame([("10.0.0.1", 0, "/p/1"), ("10.0.0.2", 5, "/")], ua=browser),
        hits_frame([("10.0.0.2", 4000, "/p/2"), ("10.0.0.3", 4001, "/p/3")], ua="python-requests/2.31.0"),
        hits_frame([("10.0.0.4", 9000, "/")], ua="").with_columns(pl.lit(None, pl.String).alias("user_agent")),
    ]
    parts = [p.with_columns(pl.lit(i * 10 + 1, pl.Int64).alias("line_no") + pl.int_range(pl.len())) for i, p in enumerate(parts)]
    whole = build_features([pl.concat(parts)], cfg, ranges=_no_ranges(cfg))
    batched = build_features(parts, cfg, ranges=_no_ranges(cfg))
    assert_frame_equal(whole.clients, batched.clients, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert sorted(batched.agents["user_agent"].to_list(), key=str) == sorted([browser, "python-requests/2.31.0", None], key=str)
    library = dict(batched.clients.select("client", "library_ua_share").iter_rows())
    assert library["10.0.0.3"] == 1.0 and library["10.0.0.1"] == 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(st.integers(0, 40_000), min_size=1, max_size=60, unique=True),
    data=st.data(),
    size=st.integers(1, 15),
    trim=st.booleans(),
)
def test_samples_are_each_clients_first_hits_whatever_the_order(cfg, times, data, size, trim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Lines out of time order (late lines, two servers' logs one after the other) still give
    each client's five earliest hits, with or without trimming the kept rows on the way."""
    from botguard.features import aggregate

    ips = data.draw(st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1"]), min_size=len(times), max_size=len(times)))
    df = hits_frame([(ip, t, f"/p/{k}") for k, (ip, t) in enumerate(zip(ips, times, strict=True))])
    if trim:
        monkeypatch.setattr(aggregate, "_FOLD_BYTES", 0)
        monkeypatch.setattr(aggregate, "_FOLD_STATE_SHARE", 0)
    parts = [df.slice(i, size) for i in range(0, len(df), size)]
    got = build_features(parts, cfg, ranges=_no_ranges(cfg)).samples
    want = df.sort("ts").group_by("client_ip", maintain_order=True).head(5)
    assert sorted(got["line_no"].to_list()) == sorted(want["line_no"].to_list())
    assert got.group_by("client").agg(pl.col("ts").is_sorted().alias("s"))["s"].all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=hit_rows, size=st.integers(1, 15))
def test_folding_sessions_into_clients_gives_the_same_clients(cfg, rows, size, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Client rows from sessions folded as the stream goes (analyze's flat-memory mode, here
    folded after every batch) equal client rows from all sessions kept."""
    from botguard.features import aggregate

    df = hits_frame(sorted(rows, key=lambda r: r[1]))
    parts = [df.slice(i, size) for i in range(0, len(df), size)]
    kept = build_features(parts, cfg, ranges=_no_ranges(cfg))
    monkeypatch.setattr(aggregate, "_FOLD_BYTES", 0)
    monkeypatch.setattr(aggregate, "_FOLD_STATE_SHARE", 0)
    folded = build_features(parts, cfg, ranges=_no_ranges(cfg), keep_sessions=False)
    monkeypatch.undo()
    assert folded.sessions.is_empty()
    assert folded.n_sessions == kept.n_sessions == len(kept.sessions)
    assert_frame_equal(kept.clients, folded.clients, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def _no_ranges(cfg):  # type: ignore[no-untyped-def]
    from botguard.ranges import load_ranges

    return load_ranges(cfg, Path("/nonexistent-botguard-ranges"))


def test_hits_without_a_client_key_are_named_in_a_warning(cfg) -> None:  # type: ignore[no-untyped-def]
    rows = [("203.0.113.5", 0, "/"), (None, 5, "/p/1"), (None, 9, "/p/2"), ("203.0.113.6", 12, "/")]
    feats = build_features([hits_frame(rows)], cfg, ranges=_no_ranges(cfg))
    assert "-" in feats.clients["client"].to_list()
    (warning,) = [w for w in feats.warnings if "no client address" in w]
    assert warning.startswith("2 of 4 hits (50%)")
    full = build_features([hits_frame([r for r in rows if r[0]])], cfg, ranges=_no_ranges(cfg))
    assert not [w for w in full.warnings if "no client address" in w]


def test_golden_features_on_tiny_log(cfg) -> None:  # type: ignore[no-untyped-def]
    # A scraper walking product ids 1..20 every 2 s, no assets; a person with assets.
    scraper = [("198.51.100.7", 2 * i, f"/p/{1000 + i}") for i in range(20)]
    person = []
    t = 0.0
    for k, page in enumerate(["/", "/c/shoes", "/p/1005", "/cart"]):
        person.append(("203.0.113.5", t, page))
        person += [("203.0.113.5", t + 0.2, f"/static/app{k}.css"), ("203.0.113.5", t + 0.3, f"/img/{k}.jpg")]
        t += 40
    df = pl.concat([hits_frame(scraper, ua="python-requests/2.31.0"), hits_frame(person)])
    res = build_features([df], cfg, ranges=_no_ranges(cfg))
    c = {r["client"]: r for r in res.clients.iter_rows(named=True)}
    s = c["198.51.100.7"]
    assert s["requests"] == 20 and s["sessions"] == 1 and s["product_pages"] == 20 and s["assets"] == 0
    assert s["seq_walk_share"] == 1.0 and s["seq_pairs"] == 19
    assert s["gap_mean_s"] == pytest.approx(2.0) and s["gap_cv"] == pytest.approx(0.0)
    assert s["distinct_products"] == 20
    assert s["library_ua_share"] == 1.0
    assert s["peak_pages_per_10s"] == 5  # one hit every 2 s, 10 s windows aligned to the clock
    h = c["203.0.113.5"]
    assert h["pages"] == 4 and h["assets"] == 8 and h["assets_per_page"] == 2.0
    assert h["cart_hits"] == 1 and h["listing_pages"] == 1 and h["product_pages"] == 1
    assert h["browser_ua_share"] == 1.0 and h["library_ua_share"] == 0.0
    assert check(res.clients, CLIENT_FEATURES_SCHEMA) == []
    assert check(res.sessions, SESSION_FEATURES_SCHEMA) == []


def test_night_share_uses_site_timezone(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("site:\n  timezone: Asia/Tokyo\n  night_hours: [0, 6]\n")
    cfg = load_config(tmp_path / "c.yaml")
    # 12:00 UTC = 21:00 Tokyo (not night); 18:00 UTC = 03:00 Tokyo (night)
    df = hits_frame([("1.2.3.4", 0, "/"), ("1.2.3.4", 6 * 3600, "/")])
    flagged = flag_hits(df, cfg).collect()
    assert flagged["is_night"].to_list() == [False, True]


def test_client_key_options(tmp_path: Path) -> None:
    df = hits_frame([("2001:db8:1:2::5", 0, "/"), ("2001:db8:1:2::9", 5, "/"), ("1.2.3.4", 9, "/")])
    # IPv6 privacy addresses (or a scraper rotating) inside one /64 are one client by default.
    for text in ("", "session:\n  key: ipv6_64\n"):
        (tmp_path / "k.yaml").write_text(text)
        keys = flag_hits(df, load_config(tmp_path / "k.yaml")).collect()["client"].to_list()
        assert keys == ["2001:db8:1:2::/64", "2001:db8:1:2::/64", "1.2.3.4"]
    (tmp_path / "a.yaml").write_text("session:\n  ipv6_prefix: 128\n")
    keys = flag_hits(df, load_config(tmp_path / "a.yaml")).collect()["client"].to_list()
    assert keys == ["2001:db8:1:2::5", "2001:db8:1:2::9", "1.2.3.4"]
    (tmp_path / "u.yaml").write_text("session:\n  key: ip+user_agent\n")
    keys = flag_hits(df, load_config(tmp_path / "u.yaml")).collect()["client"].to_list()
    assert keys[2].startswith("1.2.3.4 | Mozilla")


def test_stream_carries_open_sessions_across_batches(cfg) -> None:  # type: ignore[no-untyped-def]
    df = flag_hits(hits_frame([("9.9.9.9", i * 600, "/") for i in range(12)]), cfg).collect()
    parts = list(sessionize_stream(iter([df.slice(i, 1) for i in range(len(df))]), cfg))
    out = pl.concat(parts)
    assert out["session_no"].unique().to_list() == [0]  # 10-minute gaps never exceed 30 min


@pytest.mark.parametrize("n", [50, 2_000, 50_000])
def test_hll_error_within_bound(n: int) -> None:
    p = 12
    df = pl.DataFrame({"k": ["a"] * n, "v": [f"/products/item-{i}" for i in range(n)]})
    regs = sketches.registers(df, ["k"], pl.col("v"), p).collect()
    est = float(sketches.estimate(regs, ["k"], p)["distinct"][0])
    bound = 1.04 / (2 ** (p / 2))  # standard error
    assert abs(est - n) / n <= 4 * bound
    # Same registers through the hyperloglog package give the same estimate.
    assert sketches.to_hll(regs, p).card() == pytest.approx(est)


@pytest.mark.parametrize("p", [10, 12, 14])
def test_hll_bias_correction_matches_the_package(p: int) -> None:
    """The vectorized HLL++ bias correction gives the package's own values, key by key."""
    from hyperloglog import hll

    m = 1 << p
    raw = np.random.default_rng(p).uniform(0.7 * m, 5 * m, 5000)
    ours = sketches._bias(raw, p)
    assert ours.tolist() == [hll.estimate_bias(e, p) for e in raw]


def test_hll_merge_is_batch_independent() -> None:
    df = pl.DataFrame({"k": ["a"] * 5000, "v": [str(i % 3000) for i in range(5000)]})
    whole = sketches.registers(df, ["k"], pl.col("v"), 10).collect().sort("reg")
    parts = [sketches.registers(df.slice(i, 700), ["k"], pl.col("v"), 10).collect() for i in range(0, 5000, 700)]
    merged = sketches.merge(parts, ["k"]).sort("reg")
    assert whole.equals(merged)


@settings(max_examples=30, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3000)), min_size=0, max_size=400),
        min_size=1, max_size=5,
    ),
    divisor=st.sampled_from([8, 64, 1024]),
)
def test_dense_and_sparse_registers_agree(batches, divisor) -> None:  # type: ignore[no-untyped-def]
    """Keys that move to dense rows keep exactly the registers, and so the estimates, that the
    all-sparse merge gives."""
    p = 10
    frames = [
        sketches.registers(
            pl.DataFrame({"k": [k for k, _ in b], "v": [str(v) for _, v in b]},
                         schema={"k": pl.UInt64, "v": pl.String}),
            ["k"], pl.col("v"), p,
        ).collect()
        for b in batches
    ]
    regs = sketches.Registers("k", p)
    regs.DENSE_DIVISOR = divisor
    for f in frames:
        regs.add([f])
    reference = sketches.merge(frames, ["k"])
    assert regs.rows().sort("k", "reg").equals(reference.sort("k", "reg"))
    ours = regs.estimate().sort("k")
    theirs = sketches.estimate(reference, ["k"], p).sort("k")
    assert_frame_equal(ours, theirs, check_exact=False, rel_tol=1e-12)
    assert len(regs) == reference["k"].n_unique()
    some = pl.Series([0, 3, 99], dtype=pl.UInt64)
    assert regs.rows(some).sort("k", "reg").equals(
        reference.filter(pl.col("k").is_in(some.implode())).sort("k", "reg")
    )


@pytest.mark.parametrize("slice_rows", [0, 1_500, 10**9])
def test_register_state_is_the_same_sliced_or_whole(slice_rows, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Small states are one frame, large ones sixteen slices; a state that outgrows one slice
    mid-stream (1,500 rows) is re-sliced. Every way gives the registers of one whole merge."""
    monkeypatch.setattr(sketches, "SLICE_ROWS", slice_rows)
    p = 10
    rng = random.Random(7)
    frames = [
        sketches.registers(
            pl.DataFrame({"k": [rng.randrange(200) for _ in range(500)], "v": [str(rng.randrange(5000)) for _ in range(500)]},
                         schema={"k": pl.UInt64, "v": pl.String}),
            ["k"], pl.col("v"), p,
        ).collect()
        for _ in range(8)
    ]
    regs = sketches.Registers("k", p)
    regs.PENDING_ROWS = 0  # merge at every batch, so the state grows through the threshold
    for f in frames:
        regs.add([f])
    regs.flush()
    reference = pl.concat(frames).group_by("k", "reg").agg(pl.col("rank").max())
    assert regs.sparse is not None
    assert len(regs.sparse) == (1 if slice_rows > len(reference) else sketches.SLICES)
    assert regs.rows().sort("k", "reg").equals(reference.sort("k", "reg"))
    assert len(regs) == reference["k"].n_unique()


@pytest.mark.parametrize("slice_rows", [0, 10**9])
@pytest.mark.parametrize("divisor", [8, 64])
def test_registers_merge_and_round_trip_give_the_union(slice_rows, divisor, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two register sets (an earlier window's and this one's; keys in one, the other or both,
    dense on either side) merge to the registers of the union; a set stored as frames and
    read back is the same set."""
    monkeypatch.setattr(sketches, "SLICE_ROWS", slice_rows)
    monkeypatch.setattr(sketches.Registers, "DENSE_DIVISOR", divisor)
    p = 8
    rng = random.Random(11)

    def frames(keys: range, n: int) -> list[pl.DataFrame]:
        return [
            sketches.registers(
                pl.DataFrame({"k": [rng.choice(keys) for _ in range(n)], "v": [str(rng.randrange(3000)) for _ in range(n)]},
                             schema={"k": pl.UInt64, "v": pl.String}),
                ["k"], pl.col("v"), p,
            ).collect()
            for _ in range(3)
        ]

    # Keys 0-19 in the first set only, 40-59 in the second, 20-39 in both; with the default
    # divisor key 0 is dense in both, 25 dense in the first and sparse in the second, 30 the
    # other way round, 60 dense in the second only (with 64 nearly every key is dense).
    a = frames(range(0, 40), 300) + frames(range(0, 1), 400) + frames(range(25, 26), 400)
    b = frames(range(20, 60), 300) + frames(range(0, 1), 400) + frames(range(30, 31), 400) + frames(range(60, 61), 400)
    left, right = sketches.Registers("k", p), sketches.Registers("k", p)
    for f in a:
        left.add([f])
    for f in b:
        right.add([f])
    left.flush()
    right.flush()
    assert len(left.index) and len(right.index)  # dense rows on both sides
    if divisor == 8:
        assert 25 in left.index["k"] and 25 not in right.index["k"] and 30 in right.index["k"] and 30 not in left.index["k"]
    stored = sketches.Registers.from_frames("k", p, right.to_frames())
    assert stored.rows().sort("k", "reg").equals(right.rows().sort("k", "reg"))
    left.merge(stored)
    reference = pl.concat(a + b).group_by("k", "reg").agg(pl.col("rank").max())
    assert left.rows().sort("k", "reg").equals(reference.sort("k", "reg"))
    assert len(left) == reference["k"].n_unique()
    ours = left.estimate().sort("k")
    assert_frame_equal(ours, sketches.estimate(reference, ["k"], p).sort("k"), check_exact=False, rel_tol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=hit_rows)
def test_features_are_the_same_with_every_sketch_dense(cfg, rows, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    df = hits_frame(sorted(rows, key=lambda r: r[1]))
    sparse = build_features([df], cfg, ranges=_no_ranges(cfg))
    monkeypatch.setattr(sketches.Registers, "DENSE_DIVISOR", 1 << 20)
    dense = build_features([df], cfg, ranges=_no_ranges(cfg))
    monkeypatch.undo()
    assert_frame_equal(sparse.clients, dense.clients, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_claimed_crawler_ties_go_to_the_earliest_agent_whatever_the_batches(cfg) -> None:  # type: ignore[no-untyped-def]
    """A client rotating two crawler claims equally often: the claim checked is the one seen
    first, however the log was cut into batches (the fold order used to decide it)."""
    agents = {
        "bing": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "google": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    }
    seq = ["google", "bing", "bing", "google"] * 3 + ["bing", "google"]
    frames = [hits_frame([("10.9.9.9", 7.0 * i, f"/p/{i}")], ua=agents[name]) for i, name in enumerate(seq)]
    df = pl.concat(frames).with_columns(pl.int_range(1, len(frames) + 1).cast(pl.Int64).alias("line_no"))
    others = hits_frame([(f"10.0.0.{i}", 3.0 * i, "/") for i in range(1, 40)])
    df = pl.concat([df, others]).sort("ts", maintain_order=True)
    got = set()
    for size in (1, 2, 3, 5, 8, len(df)):
        parts = [df.slice(i, size) for i in range(0, len(df), size)]
        clients = build_features(parts, cfg, ranges=_no_ranges(cfg)).clients
        got.add(clients.filter(pl.col("client") == "10.9.9.9")["claimed_crawler"].item())
    assert got == {"Googlebot"}


def test_url_flags_cached_across_batches_are_the_flags_of_each_batch(cfg) -> None:  # type: ignore[no-untyped-def]
    """A stream's batches repeat most of their paths and queries: their flags come from the
    cache, new ones are computed, and every batch gets what it would get alone, also when the
    cache outgrows its limit and starts again."""
    pages = ["/products/blue-shoe", "/p/123", "/cart", "/static/app.css", "/wp-login.php", "/robots.txt",
             "/collections/shoes?page=2&sort=price", "/item?sku=A-9", "/search?q=%27or%201=1", "/", "/dp/B00X?x=1"]
    rnd = random.Random(5)
    batches = [
        hits_frame([("198.51.100.7", float(i), rnd.choice(pages[: 4 + 3 * b]) if i % 5 else f"/product/{b * 100 + i}")
                    for i in range(40)]).with_columns(
            pl.when(pl.col("line_no") == 7).then(None).otherwise(pl.col("path")).alias("path"))
        for b in range(3)
    ]
    batches.append(batches[1])  # nothing new at all
    for limit in (1 << 18, 4):
        cache = UrlFlagCache(limit=limit)
        for batch in batches:
            assert_frame_equal(flag_hits(batch, cfg, cache).collect(), flag_hits(batch, cfg).collect())
            held = len(cache.known["path"])
            assert held <= max(limit, batch["path"].fill_null("").n_unique())  # the limit, or one batch's
        if limit > held:  # every distinct path of the stream, once
            assert held == pl.concat(batches)["path"].fill_null("").n_unique()


def test_pages_are_navigations_not_assets_posts_or_beacons(cfg) -> None:  # type: ignore[no-untyped-def]
    """A person on a page whose tab posts a heartbeat every second and pings analytics: the
    beacons are requests, not pages, and neither rates nor timing are read from them."""
    rows = [("203.0.113.9", 0.0, "/products/blue-shoe"), ("203.0.113.9", 0.3, "/static/app.css"),
            ("203.0.113.9", 45.0, "/collections/shoes"), ("203.0.113.9", 95.0, "/products/red-shoe")]
    rows += [("203.0.113.9", 1.0 + i, "/storage/store_mousemove.php") for i in range(90)]
    rows += [("203.0.113.9", 2.5 + 10 * i, "/g/collect") for i in range(9)]
    df = hits_frame(rows).with_columns(
        pl.when(pl.col("path") == "/storage/store_mousemove.php").then(pl.lit("POST")).otherwise(pl.col("method")).alias("method")
    )
    flagged = flag_hits(df, cfg).collect()
    by_path = dict(zip(flagged["path"].to_list(), flagged.select("is_page", "is_background", "is_product").rows(), strict=False))
    assert by_path["/g/collect"] == (False, True, False)
    assert by_path["/storage/store_mousemove.php"] == (False, False, False)
    assert by_path["/products/red-shoe"] == (True, False, True)
    c = build_features([df], cfg, ranges=_no_ranges(cfg)).clients.row(0, named=True)
    assert c["requests"] == 103 and c["pages"] == 3 and c["post_requests"] == 90 and c["background_hits"] == 9
    assert c["product_pages"] == 2 and c["assets"] == 1 and c["peak_pages_per_10s"] == 1
    # Timing is read at the two pages after the first, not at 99 beacons a second apart.
    assert c["gap_n"] == 2
    assert c["no_referer_pages"] == 3 and c["no_referer_page_share"] == 1.0


def test_url_classes_that_are_not_what_they_look_like(cfg) -> None:  # type: ignore[no-untyped-def]
    """Blog slugs are not products; a shop's own WordPress scripts and AJAX are not probes;
    a release tarball is not a backup probe, a site backup is."""
    paths = ["/blog/geekery/some-long-slug.html", "/red-running-shoe.html", "/wp-includes/js/jquery/jquery.min.js",
             "/wp-admin/admin-ajax.php", "/wp-login.php", "/files/logstash-1.4.2.tar.gz", "/backup.tar.gz",
             "/shop.example.com.zip", "/db.sql"]
    flagged = flag_hits(hits_frame([("198.51.100.3", float(i), p) for i, p in enumerate(paths)]), cfg).collect()
    got = {p: (pk, probe) for p, pk, probe in flagged.select("path", "product_key", "is_probe").rows()}
    assert got == {
        "/blog/geekery/some-long-slug.html": (None, False),
        "/red-running-shoe.html": ("red-running-shoe", False),
        "/wp-includes/js/jquery/jquery.min.js": (None, False),
        "/wp-admin/admin-ajax.php": (None, False),
        "/wp-login.php": (None, True),
        "/files/logstash-1.4.2.tar.gz": (None, False),
        "/backup.tar.gz": (None, True),
        "/shop.example.com.zip": (None, True),
        "/db.sql": (None, True),
    }


#: (path, product key or None, asset) across shop platforms: the defaults must know the
#: catalogue of a shop nobody configured for.
PLATFORM_URLS = [
    ("/products/red-shoe", "red-shoe", False),  # Shopify
    ("/collections/shoes/products/red-shoe", "red-shoe", False),
    ("/cdn/shop/files/red.jpg?v=1", None, True),
    ("/product/red-shoe/", "red-shoe", False),  # WooCommerce
    ("/product-category/shoes/", None, False),
    ("/products/page/2/", None, False),
    ("/wp-content/uploads/2024/01/shoe-300x300.jpg", None, True),
    ("/red-running-shoe.html", "red-running-shoe", False),  # Magento
    ("/catalog/product/view/id/123", "123", False),
    ("/media/catalog/product/r/e/red.jpg", None, True),
    ("/en/men/12-red-shoe.html", "12-red-shoe", False),  # PrestaShop
    ("/index.php?id_product=12&controller=product", "12", False),
    ("/index.php?route=product/product&product_id=42", "42", False),  # OpenCart
    ("/image/cache/catalog/shoe-228x228.jpg", None, True),
    ("/Some-Product-Name/dp/B08N5WRWNW/ref=sr_1_1", "B08N5WRWNW", False),  # Amazon
    ("/gp/product/B08N5WRWNW", "B08N5WRWNW", False),
    ("/itm/red-shoe/123456789012", "red-shoe/123456789012", False),  # eBay
    ("/listing/1234567/red-shoe", "1234567/red-shoe", False),  # Etsy
    ("/ip/red-shoe/123456", "red-shoe/123456", False),  # Walmart
    ("/p/red-shoe/-/A-12345678", "red-shoe/-/A-12345678", False),  # Target
    ("/site/red-shoe/6401234.p?skuId=6401234", "6401234", False),  # Best Buy
    ("/us/en/p/red-shoe-12345678/", "red-shoe-12345678", False),  # IKEA
    ("/en-us/product/red-shoe/12345.html", "red-shoe/12345", False),
    ("/product/31893/62100/red-shoe", "31893/62100/red-shoe", False),  # a classic shop with a mobile site
    ("/m/product/31893/62100/red-shoe", "31893/62100/red-shoe", False),
    ("/image/60844/productModel/200x200", None, True),
    ("/_next/image?url=%2Fimg%2Fa.jpg&w=640&q=75", None, True),  # Next.js storefronts
    ("/s/Sites-Store/dw/image/v2/AAA_PRD/on/demandware.static/-/Sites-master/default/dw1/images/a", None, True),
    ("/about-us.html", None, False),
    ("/en/terms-and-conditions.html", None, False),
    ("/blog/red-shoe-review.html", None, False),
    ("/search?q=shoes", None, False),
]


def test_default_patterns_know_the_catalogue_of_common_shop_platforms(cfg) -> None:  # type: ignore[no-untyped-def]
    flagged = flag_hits(hits_frame([("198.51.100.3", float(i), p) for i, (p, _, _) in enumerate(PLATFORM_URLS)]), cfg).collect()
    got = [(key if product else None, asset) for key, product, asset in flagged.select("product_key", "is_product", "is_asset").rows()]
    assert got == [(key, asset) for _, key, asset in PLATFORM_URLS]


def test_a_price_endpoint_with_an_asset_extension_is_data_not_an_asset(cfg) -> None:  # type: ignore[no-untyped-def]
    """Shopify's /products/<handle>.js is the product's price and stock: a poller of it is not a
    browser loading scripts."""
    flagged = flag_hits(hits_frame([("198.51.100.3", 0.0, "/products/red-shoe.js"), ("198.51.100.3", 1.0, "/assets/app.js")]), cfg).collect()
    assert flagged.select("is_api", "is_asset", "is_page").rows() == [(True, False, True), (False, True, False)]


def test_one_private_address_with_most_traffic_is_named_as_a_likely_proxy(cfg) -> None:  # type: ignore[no-untyped-def]
    rows = [("10.0.0.5", float(i), f"/p/{i}") for i in range(150)] + [("198.51.100.4", float(i), "/") for i in range(20)]
    warnings = build_features([hits_frame(rows)], cfg, ranges=_no_ranges(cfg)).warnings
    assert any(w.startswith("10.0.0.5 sent 88% of all requests") and "trusted_proxies" in w for w in warnings)
    public = [("198.51.100.5", float(i), f"/p/{i}") for i in range(150)] + [("198.51.100.4", float(i), "/") for i in range(20)]
    assert not any("trusted_proxies" in w for w in build_features([hits_frame(public)], cfg, ranges=_no_ranges(cfg)).warnings)


def test_logs_without_agents_say_what_cannot_be_seen(cfg) -> None:  # type: ignore[no-untyped-def]
    rows = [("198.51.100.5", float(i), f"/p/{i}") for i in range(30)]
    bare = hits_frame(rows).with_columns(pl.lit(None, pl.String).alias("user_agent"))
    warnings = build_features([bare], cfg, ranges=_no_ranges(cfg)).warnings
    assert any(w.startswith("100% of hits have no user agent") for w in warnings)
    assert not any("no user agent" in w for w in build_features([hits_frame(rows)], cfg, ranges=_no_ranges(cfg)).warnings)


def test_a_format_without_the_method_still_has_pages_and_no_bad_requests(cfg) -> None:  # type: ignore[no-untyped-def]
    """Only $request_uri logged (or a JSON map without the method): the targets are pages, not
    malformed requests; a binary probe's target is still a bad request."""
    df = hits_frame([("198.51.100.1", 0.0, "/p/1"), ("198.51.100.1", 1.0, "/x.css"), ("198.51.100.1", 30.0, "/p/2"),
                     ("198.51.100.2", 0.0, "/")])
    df = df.with_columns(
        pl.lit(None, pl.String).alias("method"),
        pl.when(pl.col("client_ip") == "198.51.100.2").then(pl.lit("\x16\x03\x01\x02")).otherwise(pl.col("path")).alias("path"),
    )
    flagged = flag_hits(df, cfg).collect()
    assert flagged.select("is_page", "is_bad_request").rows() == [(True, False), (False, False), (True, False), (False, True)]
