"""Mergeable per-session and per-client aggregates over a stream of sessionized hits.

Everything kept between batches is a sum, min, max, histogram or HLL register — all merge
associatively — so a 10-line batch and a 10-million-line batch give the same features.
"""

from __future__ import annotations

import polars as pl

from botguard.config.models import Config
from botguard.features import sketches
from botguard.frames import (
    add_columns,
    compact,
    merge_touched,
    rename_values,
    split_touched,
    stacked,
)

#: Per-hit boolean flags summed per session (column name → session column).
FLAG_SUMS: dict[str, str] = {
    "is_page": "pages",
    "is_asset": "assets",
    "is_background": "background_hits",
    "is_product": "product_pages",
    "is_api": "api_hits",
    "is_listing": "listing_pages",
    "is_paginated": "paginated_hits",
    "is_sorted_filtered": "sort_filter_hits",
    "is_cart": "cart_hits",
    "is_checkout": "checkout_hits",
    "is_login": "login_hits",
    "is_login_post": "login_posts",
    "is_robots": "robots_hits",
    "is_sitemap": "sitemap_hits",
    "is_probe": "probe_hits",
    "is_attack": "attack_hits",
    "is_head": "head_requests",
    "is_post": "post_requests",
    "is_bad_request": "bad_requests",
    "no_referer": "no_referer_hits",
    "no_referer_page": "no_referer_pages",
    "is_4xx": "status_4xx",
    "is_404": "status_404",
    "is_429": "status_429",
    "is_5xx": "status_5xx",
    "is_night": "night_hits",
    "seq_step": "seq_steps",
    "seq_pair": "seq_pairs",
}
SUM_COLS = ["requests", "bytes_sent", *FLAG_SUMS.values(), "gap_n", "gap_sum_s", "gap_sumsq_s2"]
MAX_COLS = ["peak_10s", "peak_60s"]
_SESSION_RAW = ["_ck", "client", "session_no", *SUM_COLS, *MAX_COLS, "start_ts", "end_ts", "ip"]

#: Hits kept per client for ``explain``.
SAMPLES_PER_CLIENT = 5

_EMPTY_SAMPLE_STATE = pl.DataFrame(
    schema={"_ck": pl.UInt64, "_have": pl.Int32, "_last": pl.Datetime("us", "UTC")}
)

#: Per-batch partial state is folded into the running state once it holds this many bytes,
#: or half the size of that state if more: a fold costs O(state), so a fixed threshold would
#: make logs with many clients quadratic; this way each row is folded O(1) times on average,
#: for at most 1.5 times the state in memory.
_FOLD_BYTES = 8 << 20
_FOLD_STATE_SHARE = 0.5


def _fold_due(parts: list[pl.DataFrame], state: pl.DataFrame | None) -> bool:
    size = sum(f.estimated_size() for f in parts)
    state_size = state.estimated_size() if state is not None else 0
    return size > max(_FOLD_BYTES, _FOLD_STATE_SHARE * state_size)

# Inter-arrival histogram: 4 bins per octave from 0.1 s; median read back from it.
_BINS_PER_OCTAVE = 4
_MAX_BIN = 79


def _gap_bin(gap: pl.Expr) -> pl.Expr:
    return (
        pl.when(gap < 0.1).then(0)
        .otherwise(((gap * 10).log(2) * _BINS_PER_OCTAVE).floor().cast(pl.Int32) + 1)
        .clip(0, _MAX_BIN)
        .cast(pl.Int16)
    )


def _bin_value(b: int) -> float:
    return 0.05 if b == 0 else (2 ** ((b - 0.5) / _BINS_PER_OCTAVE)) / 10


class FeatureAccumulator:
    """Per-batch partial aggregates, merged as batches arrive.

    With ``keep_sessions`` off (analyze, client-level features) closed sessions are folded
    into per-client sums as they pile up, so the state is one row per client whatever the
    length of the log; on, every session row is kept for session-level output.
    """

    def __init__(self, cfg: Config, *, keep_sessions: bool = True) -> None:
        self.cfg = cfg
        self.p = cfg.sketches.precision
        self.keep_sessions = keep_sessions
        self.open: pl.DataFrame | None = None
        self.closed: list[pl.DataFrame] = []
        self.client_sums: pl.DataFrame | None = None
        self.n_sessions = 0
        self.hist: pl.DataFrame | None = None
        self.ua_counts: pl.DataFrame | None = None
        # The first hits of each client (for ``explain``): append-only parts, and per client
        # how many rows are kept and the latest kept time, so a batch adds only rows that can
        # still be among the first (see ``_sample_query``).
        self._sample_parts: list[pl.DataFrame] = []
        self._sample_state = _EMPTY_SAMPLE_STATE
        self._sample_trim_bytes = _FOLD_BYTES
        # Sketches merged as batches come (products, paths, catalogue) and those built at the
        # end from the (client, agent) pairs (agents, agent_clients).
        self.sketches: dict[str, sketches.Registers] = {}
        self.regs: dict[str, pl.DataFrame] = {}
        self._parts: dict[str, list[pl.DataFrame]] = {}
        self.timeline: pl.DataFrame | None = None

    # ------------------------------------------------------------------ per batch
    def add(self, hits: pl.DataFrame) -> None:
        if hits.is_empty():
            return
        lf = hits.lazy()
        # Timing is read at pages: the gap before each page (since the client's previous
        # request) is the think time; gaps before assets and beacons say how a browser loads.
        within = ~pl.col("new_session") & pl.col("gap_s").is_not_null() & pl.col("is_page")
        gap = pl.col("gap_s")
        # Grouped by the 64-bit client key (see hitflags); the client string rides along.
        session_keys = ["_ck", "session_no"]
        parts = lf.group_by(session_keys).agg(
            pl.col("client").first(),
            pl.len().cast(pl.Int64).alias("requests"),
            pl.col("bytes").sum().cast(pl.Int64).alias("bytes_sent"),
            *[pl.col(c).sum().cast(pl.Int64).alias(n) for c, n in FLAG_SUMS.items()],
            within.sum().cast(pl.Int64).alias("gap_n"),
            gap.filter(within).sum().alias("gap_sum_s"),
            (gap.filter(within) ** 2).sum().alias("gap_sumsq_s2"),
            pl.col("ts").min().alias("start_ts"),
            pl.col("ts").max().alias("end_ts"),
            pl.col("client_ip").drop_nulls().first().alias("ip"),
        )
        # Clock-aligned 10 s and 1 min windows: epoch floor-divided, the minute from the 10 s
        # bucket, so the first group-by needs no minute key.
        # Peak page rates: how fast the client navigates (a page's assets load in a burst).
        peaks = (
            lf.filter(pl.col("is_page"))
            .select(*session_keys, (pl.col("ts").dt.epoch("us") // 10_000_000).alias("_b10"))
            .group_by([*session_keys, "_b10"]).agg(pl.len().alias("_n"))
            .with_columns((pl.col("_b10") // 6).alias("_b60"))
            .group_by([*session_keys, "_b60"]).agg(pl.col("_n").max().alias("_p10"), pl.col("_n").sum().alias("_n60"))
            .group_by(session_keys).agg(
                pl.col("_p10").max().cast(pl.Int64).alias("peak_10s"),
                pl.col("_n60").max().cast(pl.Int64).alias("peak_60s"),
            )
        )
        batch_q = parts.join(peaks, on=session_keys, how="left").with_columns(
            pl.col("peak_10s", "peak_60s").fill_null(0)
        )

        hist_q = lf.filter(within).group_by("_ck", _gap_bin(gap).alias("bin")).agg(pl.len().cast(pl.Int64).alias("n"))
        ua_q = lf.with_columns(sketches.key_hash(pl.col("user_agent")).alias("_uk")).group_by("_ck", "_uk").agg(
            pl.col("client").first(), pl.col("user_agent").first(),
            pl.len().cast(pl.Int64).alias("n"), pl.col("ts").min().alias("first_ts"),
        )
        # Keyed by the 64-bit client key only: hours × clients rows, no client strings.
        timeline_q = lf.group_by(pl.col("ts").dt.truncate("1h").alias("bucket"), "_ck").agg(
            pl.len().cast(pl.Int64).alias("requests")
        )
        sample_q = self._sample_query(lf)
        p = self.p
        product_val = pl.when(pl.col("is_product")).then(pl.col("product_key"))
        page_val = pl.when(pl.col("is_page")).then(pl.col("path"))
        # Sketch state is keyed by 64-bit hashes of the client and agent strings: the register
        # rows are most of the per-client state, and repeating long strings in them is what
        # would make memory grow with the log.
        # Agents per client and clients per agent are sketched at the end from the (client,
        # agent) pairs kept anyway for the agent counts: a sketch depends only on the set of
        # values, so that gives the very same registers without a pass over every hit.
        hk = lf.with_columns(pl.lit(0, pl.UInt64).alias("_all"))
        sketch_q = {
            "products": sketches.registers(hk, ["_ck"], product_val, p),
            "paths": sketches.registers(hk, ["_ck"], page_val, p),
            "catalogue": sketches.registers(hk, ["_all"], product_val, p),
        }
        # One collect for every query of the batch: Polars runs them side by side.
        batch, hist, ua, timeline, sample, *regs = pl.collect_all(
            [batch_q, hist_q, ua_q, timeline_q, sample_q, *sketch_q.values()]
        )
        self._merge_sessions(batch)
        # Sum-merged state is kept as a list of per-batch frames and folded only when it grows:
        # folding after every batch would cost O(state) per batch.
        self._add_samples(sample)
        folded = {"hist": self.hist, "ua": self.ua_counts, "timeline": self.timeline}
        for name, frame in (("hist", hist), ("ua", compact(ua)), ("timeline", compact(timeline))):
            self._parts.setdefault(name, []).append(frame)
            # Folded by size, not row count: agent rows carry long strings.
            if _fold_due(self._parts[name], folded[name]):
                self._fold(name)
        for name, frame in zip(sketch_q, regs, strict=True):
            if name not in self.sketches:
                (key,) = [c for c in frame.columns if c not in ("reg", "rank")]
                self.sketches[name] = sketches.Registers(key, self.p)
            self.sketches[name].add([frame])

    def _sample_query(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """Rows of this batch that may be among their client's first ``SAMPLES_PER_CLIENT``.

        ``client_hit_no`` ranks a client's hits within the batch by time, so only the first few
        of each batch qualify. A client that already has ``have`` rows, the latest at
        ``last``, takes a row earlier than ``last`` (a late line, or files given out of time
        order), or one of its first ``SAMPLES_PER_CLIENT - have`` otherwise: in time-ordered
        logs that is exactly what is missing, and ``samples()`` keeps the earliest per client.
        The agent text is in the agent counts already: a row keeps the agent's hash."""
        have = pl.col("_have").fill_null(0)
        return (
            lf.filter(pl.col("client_hit_no") < SAMPLES_PER_CLIENT)
            # In input order: ties in time keep their order (a join does not by itself).
            .join(self._sample_state.lazy(), on="_ck", how="left", maintain_order="left")
            .filter((pl.col("ts") < pl.col("_last")).fill_null(False) | (pl.col("client_hit_no") < SAMPLES_PER_CLIENT - have))
            .select(
                "_ck", "client", "ts", pl.col("source").cast(pl.Categorical), "line_no", "method",
                "path", "query", "status", sketches.key_hash(pl.col("user_agent")).alias("_uk"),
            )
        )

    def _add_samples(self, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        self._sample_parts.append(compact(rows))
        # Only this batch's clients change: five times cheaper than re-aggregating every
        # client seen so far.
        self._sample_state = stacked(*merge_touched(
            self._sample_state, _sample_counts(rows), "_ck", [pl.col("_have").sum(), pl.col("_last").max()]
        ))
        # Out-of-order input adds rows that later ones push out: trimmed when they pile up
        # (the threshold doubles, so time-ordered logs, whose rows all stay, are not re-sorted
        # over and over).
        if sum(f.estimated_size() for f in self._sample_parts) > self._sample_trim_bytes:
            kept = self._first_samples(pl.concat(self._sample_parts))
            self._sample_parts = [kept]
            self._sample_state = _sample_counts(kept)
            self._sample_trim_bytes = max(_FOLD_BYTES, 2 * int(kept.estimated_size()))

    @staticmethod
    def _first_samples(rows: pl.DataFrame) -> pl.DataFrame:
        """Each client's earliest rows (ties in input order), grouped by client key. Rows come
        in input order, which in most logs is already time order: then the only sort is a
        stable one on the 64-bit key, not a three-column sort of every row."""
        if not rows["ts"].is_sorted():
            rows = rows.sort("ts", maintain_order=True)
        return rows.group_by("_ck", maintain_order=True).head(SAMPLES_PER_CLIENT).sort("_ck", maintain_order=True)

    def _fold(self, name: str) -> None:
        frames = self._parts.pop(name, [])
        if not frames:
            return
        new = pl.concat(frames)
        if name == "hist":
            self.hist = stacked(*merge_touched(self.hist, new, ["_ck", "bin"], [pl.col("n").sum()]))
        elif name == "ua":
            # Only the (client, agent) pairs of the new rows are aggregated again, and their
            # strings copied out of the batches.
            carried, changed = merge_touched(self.ua_counts, new, ["_ck", "_uk"], [
                pl.col("client").first(), pl.col("user_agent").first(), pl.col("n").sum(), pl.col("first_ts").min(),
            ])
            self.ua_counts = stacked(carried, compact(changed))
        else:
            self.timeline = stacked(*merge_touched(self.timeline, compact(new), ["bucket", "_ck"], [pl.col("requests").sum()]))

    def finish_parts(self) -> None:
        for name in list(self._parts):
            self._fold(name)

    def finish_sketches(self) -> None:
        for regs in self.sketches.values():
            regs.flush()
        self.finish_parts()
        if self.ua_counts is not None and "agents" not in self.regs:
            pairs = self.ua_counts.lazy()
            agents, agent_clients = pl.collect_all([
                sketches.registers(pairs, ["_ck"], pl.col("user_agent").fill_null(""), self.p),
                sketches.registers(pairs.filter(pl.col("user_agent").is_not_null()), ["_uk"], pl.col("client"), self.p),
            ])
            self.regs["agents"], self.regs["agent_clients"] = agents, agent_clients

    def _merge_sessions(self, batch: pl.DataFrame) -> None:
        # Only the open sessions of this batch's clients can change: the others are carried
        # over as they are, not re-aggregated and re-copied at every batch.
        carried: pl.DataFrame | None = None
        batch = batch.select(_SESSION_RAW)
        if self.open is not None and len(self.open):
            carried, touched = split_touched(self.open, batch, ["_ck"])
            batch = _continue_sessions(touched, batch)
        latest = pl.col("session_no") == pl.col("session_no").max().over("_ck")
        closed = batch.filter(~latest)
        self.n_sessions += len(closed)
        self.closed.append(compact(closed))
        self.open = stacked(carried, compact(batch.filter(latest)))
        if not self.keep_sessions and _fold_due(self.closed, self.client_sums):
            self._fold_sessions(self.closed)
            self.closed = []

    def _fold_sessions(self, frames: list[pl.DataFrame]) -> None:
        """Closed sessions → per-client sums, merged into ``client_sums``. A client's sessions
        close in order, so earlier folds hold its earlier sessions: ``first`` stays the first."""
        frames = [f for f in frames if len(f)]
        if not frames:
            return
        # Each session becomes a one-session client row; old and new rows then merge with one
        # aggregation (rows in session order, so ``first`` is the client's first session).
        duration = (pl.col("end_ts") - pl.col("start_ts")).dt.total_microseconds() / 1e6
        rows = pl.concat(frames, how="diagonal_relaxed").lazy().sort("_ck", "session_no").select(
            "_ck", "client", pl.lit(1, pl.Int64).alias("sessions"), *SUM_COLS, *MAX_COLS,
            pl.col("start_ts").alias("first_seen"), pl.col("end_ts").alias("last_seen"),
            duration.alias("active_s"), duration.alias("longest_session_s"), "ip",
        )
        # Only the clients whose sessions closed change; the others are carried over.
        carried, changed = merge_touched(self.client_sums, rows.collect(), "_ck", _CLIENT_MERGE, maintain_order=True)
        self.client_sums = stacked(carried, compact(changed))

    # ------------------------------------------------------------------ carried state
    def to_frames(self) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
        """The running state as frames and counters, for ``from_frames`` in a later run
        (incremental analysis). Closed sessions are folded into the client sums first."""
        assert not self.keep_sessions, "session rows are not carried"
        assert not self.regs, "carry the state before the results are built"
        self.finish_parts()
        self._fold_sessions(self.closed)
        self.closed = []
        frames: dict[str, pl.DataFrame | None] = {
            "open": self.open, "client_sums": self.client_sums, "hist": self.hist,
            "ua_counts": self.ua_counts, "timeline": self.timeline,
            "samples": pl.concat(self._sample_parts) if self._sample_parts else None,
            "sample_state": self._sample_state,
        }
        out = {k: v for k, v in frames.items() if v is not None}
        for name, regs in self.sketches.items():
            out.update({f"sketch.{name}.{part}": f for part, f in regs.to_frames().items()})
        return out, {"n_sessions": self.n_sessions}

    @classmethod
    def from_frames(cls, cfg: Config, frames: dict[str, pl.DataFrame], counters: dict[str, int]) -> FeatureAccumulator:
        acc = cls(cfg, keep_sessions=False)
        acc.open = frames.get("open")
        acc.client_sums = frames.get("client_sums")
        acc.hist = frames.get("hist")
        acc.ua_counts = frames.get("ua_counts")
        acc.timeline = frames.get("timeline")
        samples = frames.get("samples")
        acc._sample_parts = [samples] if samples is not None else []
        acc._sample_state = frames.get("sample_state", _EMPTY_SAMPLE_STATE)
        acc.n_sessions = int(counters.get("n_sessions", 0))
        names = {k.split(".")[1] for k in frames if k.startswith("sketch.")}
        for name in sorted(names):
            prefix = f"sketch.{name}."
            parts = {k[len(prefix):]: f for k, f in frames.items() if k.startswith(prefix)}
            (key,) = [c for c in parts["index"].columns if c != "_row"]  # as ``add`` names it
            acc.sketches[name] = sketches.Registers.from_frames(key, acc.p, parts)
        return acc

    def absorb(self, earlier: FeatureAccumulator) -> None:
        """Add the state of ``earlier``, an accumulator over the traffic just before this
        one's (the previous window of an incremental analysis): sums add, maxima and sketches
        merge, samples keep the earliest hits. A session open across the boundary of the two
        counts once in each."""
        earlier.finish_parts()
        if earlier.open is not None:
            earlier.n_sessions += len(earlier.open)  # its open sessions end there
        earlier._fold_sessions([*earlier.closed, *([earlier.open] if earlier.open is not None else [])])
        earlier.closed, earlier.open = [], None
        self.finish_parts()
        self.n_sessions += earlier.n_sessions
        # Merged into the earlier state, so that ``first`` (a client's name, address, the
        # agent text) keeps the older value.
        if earlier.client_sums is not None:
            mine_sums, self.client_sums = self.client_sums, earlier.client_sums
            if mine_sums is not None:
                self.client_sums = stacked(*merge_touched(self.client_sums, mine_sums, "_ck", _CLIENT_MERGE, maintain_order=True))
        for name, attr in (("hist", "hist"), ("ua", "ua_counts"), ("timeline", "timeline")):
            theirs = getattr(earlier, attr)
            if theirs is None:
                continue
            mine = getattr(self, attr)
            setattr(self, attr, theirs)
            if mine is not None:
                self._parts[name] = [mine]
                self._fold(name)
        if earlier._sample_parts:
            self._sample_parts = [*earlier._sample_parts, *self._sample_parts]
            self._sample_state = _sample_counts(pl.concat(self._sample_parts))
        for name, regs in earlier.sketches.items():
            if name in self.sketches:
                self.sketches[name].merge(regs)
            else:
                self.sketches[name] = regs

    def restricted(self, keys: pl.Series) -> FeatureAccumulator:
        """A copy holding only the clients of ``keys`` (64-bit client keys): their rows
        (``client_rows``) come out as they would from the whole state, at the cost of those
        clients. The catalogue sketch is not per client and is left out."""
        self.finish_parts()
        out = FeatureAccumulator(self.cfg, keep_sessions=self.keep_sessions)
        wanted = pl.col("_ck").is_in(keys.implode())

        def pick(frame: pl.DataFrame | None) -> pl.DataFrame | None:
            return None if frame is None else frame.filter(wanted)

        out.open, out.client_sums, out.hist = pick(self.open), pick(self.client_sums), pick(self.hist)
        out.ua_counts, out.timeline = pick(self.ua_counts), pick(self.timeline)
        out.closed = [f.filter(wanted) for f in self.closed]
        out._sample_parts = [f.filter(wanted) for f in self._sample_parts]
        out._sample_state = self._sample_state.filter(wanted)
        out.sketches = {name: regs.restricted(keys) for name, regs in self.sketches.items() if regs.key == "_ck"}
        return out

    def side_frames(self) -> FeatureAccumulator:
        """A copy with only the agent counts, hourly timeline and samples: what a result over
        every client needs beside the client rows (``absorb`` merges them as it does here)."""
        self.finish_parts()
        out = FeatureAccumulator(self.cfg, keep_sessions=False)
        out.ua_counts, out.timeline = self.ua_counts, self.timeline
        out._sample_parts, out._sample_state = list(self._sample_parts), self._sample_state
        return out

    def rename_sources(self, renamed: dict[str, str]) -> bool:
        """Sample lines name the log they are in now (``renamed``: old name → new, all at once,
        as logrotate shifts every rotation by one). Whether any sample changed."""
        changed = False
        for i, part in enumerate(self._sample_parts):
            new = rename_values(part, "source", renamed)
            if new is not None:
                self._sample_parts[i], changed = new, True
        return changed

    # ------------------------------------------------------------------ results
    def samples(self) -> pl.DataFrame:
        """Each client's first hits in time order, with their agent's text."""
        self.finish_parts()
        if not self._sample_parts:
            return pl.DataFrame()
        rows = self._first_samples(pl.concat(self._sample_parts))
        if self.ua_counts is not None:
            # The agent's hash names its text: a join on it alone, against one row per agent,
            # costs a fraction of one on (client, agent) against every pair.
            agents = self.ua_counts.select("_uk", "user_agent").unique("_uk")
            rows = rows.join(agents, on="_uk", how="left", maintain_order="left")
        else:
            rows = rows.with_columns(pl.lit(None, pl.String).alias("user_agent"))
        # Left grouped by client key, each client's rows in time order: ``explain`` filters by
        # client, and a sort on the client strings cost a second on many-client logs.
        return rows.select(
            "_ck", "client", "ts", pl.col("source").cast(pl.String), "line_no", "method", "path",
            "query", "status", "user_agent",
        )

    def total_sessions(self) -> int:
        return self.n_sessions + (len(self.open) if self.open is not None else 0)

    def sessions(self) -> pl.DataFrame:
        """One row per session (only with ``keep_sessions``: otherwise they were folded)."""
        self.finish_sketches()
        frames = [f for f in [*self.closed, self.open] if f is not None and len(f)]
        if not frames or not self.keep_sessions:
            return pl.DataFrame()
        raw = pl.concat(frames, how="diagonal_relaxed").sort("client", "session_no")
        return raw.with_columns(_derived(session=True)).drop("_ck")

    def clients(self) -> pl.DataFrame:
        """One row per client. Folds every remaining session into the client sums: call
        ``sessions()`` first if you want the session rows too."""
        rows = self.client_rows()
        if rows.is_empty():
            return pl.DataFrame()
        return finish_clients(rows, self.total_products(), self.regs.get("agent_clients"), self.p)

    def total_products(self) -> float:
        """Distinct products over all clients (the catalogue seen)."""
        catalogue = self.sketches.get("catalogue")
        if catalogue is None or catalogue.is_empty():
            return 0.0
        return float(sketches.estimate(catalogue, ["_all"], self.p)["distinct"][0])

    def client_rows(self) -> pl.DataFrame:
        """One row per client, keyed by ``_ck``, with every column that depends on the client's
        own traffic alone (``finish_clients`` adds the two that depend on everyone's). An
        incremental run keeps these rows and recomputes only the clients it saw."""
        self.finish_sketches()
        if self.open is not None:
            self.n_sessions += len(self.open)  # open sessions end here
        self._fold_sessions([*self.closed, *([self.open] if self.open is not None else [])])
        self.closed, self.open = [], None
        if self.client_sums is None or self.client_sums.is_empty():
            return pl.DataFrame()
        agg, p = self.client_sums, self.p
        for name, col in (("products", "distinct_products"), ("paths", "distinct_paths"), ("agents", "distinct_agents")):
            regs = self.sketches.get(name) if name != "agents" else self.regs.get(name)
            if regs is not None and not regs.is_empty():
                est = sketches.estimate(regs, ["_ck"], p, col)
                agg = add_columns(agg, est, "_ck")
            else:
                agg = agg.with_columns(pl.lit(0.0).alias(col))
        agg = agg.with_columns(
            pl.col("distinct_products", "distinct_paths", "distinct_agents").fill_null(0.0).round(0)
        )
        # Timing from the merged histogram.
        if self.hist is not None and len(self.hist):
            med = _hist_median(self.hist)
            agg = add_columns(agg, med, "_ck")
        else:
            agg = agg.with_columns(pl.lit(None, pl.Float64).alias("gap_median_s"))
        # Each client's most frequent agent (ties: the earliest seen, then the agent's hash).
        # Sorted on numbers only: sorting on the client and agent strings took seconds on
        # logs with hundreds of thousands of clients.
        top_ua = (
            self.ua_counts.sort(["_ck", "n", "first_ts", "_uk"], descending=[False, True, False, False], nulls_last=True)
            .group_by("_ck", maintain_order=True).first()
            .select("_ck", "user_agent")
            if self.ua_counts is not None else pl.DataFrame(schema={"_ck": pl.UInt64, "user_agent": pl.String})
        )
        agg = add_columns(agg, top_ua, "_ck")
        return agg.with_columns(_derived(session=False)).with_columns(
            pl.when(pl.col("product_pages") > 0)
            .then((1 - pl.col("distinct_products") / pl.col("product_pages")).clip(0, 1))
            .otherwise(0.0).alias("product_revisit_share"),
        )


def finish_clients(
    rows: pl.DataFrame, total_products: float, agent_clients: pl.DataFrame | None, p: int
) -> pl.DataFrame:
    """``client_rows`` with the columns that depend on every client: how many clients share
    the top agent (``agent_clients``: the agent → client sketch) and the share of all
    products seen (``total_products``). Sorted by client."""
    if agent_clients is not None and len(agent_clients):
        per_agent = sketches.estimate(agent_clients, ["_uk"], p, "clients_per_agent")
        rows = add_columns(rows.with_columns(sketches.key_hash(pl.col("user_agent")).alias("_uk")), per_agent, "_uk")
        rows = rows.drop("_uk").with_columns(pl.col("clients_per_agent").fill_null(1.0).round(0))
    else:
        rows = rows.with_columns(pl.lit(1.0).alias("clients_per_agent"))
    rows = rows.with_columns(
        pl.when(total_products > 0).then(pl.col("distinct_products") / total_products).otherwise(0.0).alias("catalogue_coverage"),
    )
    order = [c for c in rows.columns if c not in ("_ck", "clients_per_agent", "catalogue_coverage")]
    order.insert(order.index("user_agent") + 1, "clients_per_agent")
    order.insert(order.index("product_revisit_share"), "catalogue_coverage")
    return rows.select(order).sort("client")


#: How per-client sums merge: a client's rows in time order (``first`` is the earliest).
_CLIENT_MERGE = [
    pl.col("client").first(),
    *[pl.col(c).sum() for c in ("sessions", *SUM_COLS)],
    *[pl.col(c).max() for c in MAX_COLS],
    pl.col("first_seen").min(),
    pl.col("last_seen").max(),
    pl.col("active_s").sum(),
    pl.col("longest_session_s").max(),
    pl.col("ip").drop_nulls().first(),
]


def _sample_counts(rows: pl.DataFrame) -> pl.DataFrame:
    """Per client: how many sample rows, and the latest one's time."""
    return rows.group_by("_ck").agg(pl.len().cast(pl.Int32).alias("_have"), pl.col("ts").max().alias("_last"))


def _continue_sessions(open_rows: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
    """``batch``'s session rows with the open sessions they continue merged in, plus the open
    sessions they do not continue (those ended before the batch's first session).

    A client has one open session, and the sessionizer numbers a client's sessions on from
    it, so an open row continues at most one batch row: the one with its session number. A
    join on the client and column-wise sums, maxima and minima do what a group-by of both
    would, without hashing two keys over every row of the batch."""
    prior = open_rows.select(pl.all().name.prefix("_o_"))
    joined = batch.join(prior, left_on="_ck", right_on="_o__ck", how="left")
    same = (pl.col("session_no") == pl.col("_o_session_no")).fill_null(False)
    merged = joined.with_columns(
        *[pl.when(same).then(pl.sum_horizontal(c, "_o_" + c)).otherwise(pl.col(c)).alias(c) for c in SUM_COLS],
        *[pl.when(same).then(pl.max_horizontal(c, "_o_" + c)).otherwise(pl.col(c)).alias(c) for c in MAX_COLS],
        pl.when(same).then(pl.min_horizontal("start_ts", "_o_start_ts")).otherwise(pl.col("start_ts")).alias("start_ts"),
        pl.when(same).then(pl.max_horizontal("end_ts", "_o_end_ts")).otherwise(pl.col("end_ts")).alias("end_ts"),
        # The open row came first: its address (when it has one) is the session's first.
        pl.when(same).then(pl.coalesce("_o_ip", "ip")).otherwise(pl.col("ip")).alias("ip"),
        same.alias("_same"),
    )
    continued = merged.select(pl.col("_ck").filter(pl.col("_same")).implode()).to_series()
    ended = open_rows.filter(~pl.col("_ck").is_in(continued))
    return pl.concat([merged.select(_SESSION_RAW), ended.select(_SESSION_RAW)])


def _hist_median(hist: pl.DataFrame) -> pl.DataFrame:
    values = pl.Series([_bin_value(b) for b in range(_MAX_BIN + 1)], dtype=pl.Float64)
    return (
        hist.sort("_ck", "bin")
        .with_columns(
            pl.col("n").cum_sum().over("_ck").alias("_cum"),
            pl.col("n").sum().over("_ck").alias("_tot"),
        )
        .filter(pl.col("_cum") * 2 >= pl.col("_tot"))
        .group_by("_ck").agg(pl.col("bin").first())
        .select(
            "_ck",
            pl.col("bin").replace_strict(dict(enumerate(values.to_list())), return_dtype=pl.Float64).alias("gap_median_s"),
        )
    )


def _derived(session: bool) -> list[pl.Expr]:
    """Rates and shares from the merged sums; units in the names."""
    req = pl.col("requests").cast(pl.Float64)
    pages = pl.col("pages").cast(pl.Float64)
    if session:
        dur = (pl.col("end_ts") - pl.col("start_ts")).dt.total_microseconds() / 1e6
        exprs = [dur.alias("duration_s")]
        minutes = (dur / 60).clip(lower_bound=1.0)
    else:
        minutes = (pl.col("active_s") / 60).clip(lower_bound=1.0)
        exprs = [((pl.col("last_seen") - pl.col("first_seen")).dt.total_microseconds() / 1e6).alias("span_s")]
    gap_mean = pl.col("gap_sum_s") / pl.col("gap_n")
    gap_var = (pl.col("gap_sumsq_s2") / pl.col("gap_n") - gap_mean**2).clip(lower_bound=0)
    gap_sd = gap_var.sqrt()

    def share(col: str, of: pl.Expr = req) -> pl.Expr:
        return pl.when(of > 0).then(pl.col(col) / of).otherwise(0.0)

    exprs += [
        (req / minutes).alias("req_per_min"),
        (pages / minutes).alias("pages_per_min"),
        (pl.col("product_pages") / minutes).alias("product_pages_per_min"),
        pl.col("peak_10s").alias("peak_pages_per_10s"),
        pl.col("peak_60s").alias("peak_pages_per_min"),
        pl.when(pl.col("gap_n") > 0).then(gap_mean).alias("gap_mean_s"),
        pl.when((pl.col("gap_n") > 1) & (gap_mean > 0)).then(gap_sd / gap_mean).alias("gap_cv"),
        # Goh-Barabási burstiness: -1 perfectly regular, 0 random, → 1 bursty.
        pl.when((pl.col("gap_n") > 1) & (gap_sd + gap_mean > 0)).then((gap_sd - gap_mean) / (gap_sd + gap_mean)).alias("burstiness"),
        pl.when(pages > 0).then(pl.col("assets") / pages).otherwise(0.0).alias("assets_per_page"),
        share("assets").alias("asset_share"),
        share("product_pages", pages).alias("product_share"),
        share("api_hits").alias("api_share"),
        share("listing_pages", pages).alias("listing_share"),
        share("paginated_hits").alias("paginated_share"),
        share("sort_filter_hits").alias("sort_filter_share"),
        share("head_requests").alias("head_share"),
        share("post_requests").alias("post_share"),
        share("no_referer_hits").alias("no_referer_share"),
        share("no_referer_pages", pages).alias("no_referer_page_share"),
        share("status_4xx").alias("error_4xx_share"),
        share("status_404").alias("error_404_share"),
        share("status_429").alias("error_429_share"),
        share("status_5xx").alias("error_5xx_share"),
        share("night_hits").alias("night_share"),
        share("probe_hits").alias("probe_share"),
        share("attack_hits").alias("attack_share"),
        share("bad_requests").alias("bad_request_share"),
        share("seq_steps", pl.col("seq_pairs").cast(pl.Float64)).alias("seq_walk_share"),
        (pl.col("api_hits") > 0) & (pl.col("product_pages") == 0),
    ]
    exprs[-1] = exprs[-1].alias("api_without_product")
    return exprs

