"""Feature state carried from one incremental run to the next.

A cron job that runs every few minutes should read only the lines written since the last run,
yet judge each client on hours of its traffic. The carry holds what the stream would have
held had it never stopped: the sessionizer's last hit per client and its held-back lines, and
the accumulator's per-client sums, histograms, agent counts, first hits and sketch registers.
All of it is per client, none of it is hits, so it stays the size of the client population.

Evidence must also age out, or a carrier NAT would pile up a month of product pages. Windows
of ``state.window`` tile the data's time line (from a minute boundary, so per-minute peaks never
straddle two); the carry keeps the current one and the one before it, each hit goes to the
window of its time (or none, when older than both), and decisions read both: a client is
judged on one to two windows of its traffic however the runs fell, a long catch-up included.

The carry is only valid for the settings that shaped it (formats, client key, session gap,
URL patterns, sketch precision): when they change, the run starts over from the logs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from botguard import __version__
from botguard.config import config_hash
from botguard.config.models import Config
from botguard.features import sketches
from botguard.features.aggregate import FeatureAccumulator, finish_clients
from botguard.frames import rename_values
from botguard.ingest import ParseStats
from botguard.sessionize import Sessionizer
from botguard.sources.cursors import Cursor

if TYPE_CHECKING:
    from botguard.agent_process import AgentProcess

#: Bumped when the carried frames change shape: an older carry is then set aside.
FORMAT = 1

#: Config sections that shape the carried state (rules, model and policy do not).
_SHAPING = ("ingest", "session", "site", "catalogue", "sketches")
_NOT_SHAPING = {"ingest": ("batch_bytes", "max_error_ratio", "sniff_lines")}


def shaping_hash(cfg: Config) -> str:
    parts: dict[str, Any] = {}
    for section in _SHAPING:
        dumped = getattr(cfg, section).model_dump(mode="json")
        for key in _NOT_SHAPING.get(section, ()):
            dumped.pop(key, None)
        parts[section] = dumped
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _frame_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf, compression="lz4")
    return buf.getvalue()


def _frame(blob: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(blob))


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class Carry:
    """The state of an incremental analysis (see the module docstring). ``add`` feeds it
    sessionized hits, closing the current window whenever the data reaches its end, so a
    long catch-up read (the first run, a run after an outage) ends with the last two windows
    of what it read, not with all of it in one."""

    cfg: Config
    sessionizer: Sessionizer
    current: FeatureAccumulator
    window_start: datetime | None = None
    last_ts: datetime | None = None
    cursors: list[Cursor] = field(default_factory=list)
    #: The previous window: serialized as loaded (stored again as is unless replaced), and
    #: read back for this run's judgement.
    previous: dict[str, bytes] = field(default_factory=dict)
    previous_start: datetime | None = None
    previous_acc: FeatureAccumulator | None = None
    #: (parsed, rejected) lines of the previous and the current window.
    lines: tuple[int, int] = (0, 0)
    previous_lines: tuple[int, int] = (0, 0)
    #: The log format the carried traffic was read with (a sniffed one is kept), and the
    #: W3C columns in force at its end (a resumed IIS log has its #Fields line behind it).
    format: str | None = None
    format_sniffed: bool = False
    parser_columns: list[str] | None = None
    #: What was inferred from the carried traffic's URL shapes (``hitflags.Flagger``); None
    #: while no run has had page views enough to settle it.
    inferred_products: dict[str, list[str]] | None = None
    #: Optional fields (referer, agent …) seen on some line of the carried traffic.
    columns_seen: set[str] = field(default_factory=set)
    #: Set by ``seal``: the blobs to store. ``rolled``: a window closed during this run.
    sealed: dict[str, bytes] | None = None
    rolled: bool = False
    #: Hits of this run older than the previous window: not counted.
    aged_out: int = 0
    #: The previous run's client rows (``FeatureAccumulator.client_rows`` over both windows),
    #: and the client keys this run has added hits to (per batch): only those clients' rows
    #: are computed again (``judge``).
    kept_rows: pl.DataFrame | None = None
    touched: list[pl.Series] = field(default_factory=list)
    #: The previous run's agent table (``features.agent_table``), built under this config:
    #: only agents it lacks are parsed (``agent_table``).
    kept_agents: pl.DataFrame | None = None

    @classmethod
    def fresh(cls, cfg: Config) -> Carry:
        return cls(cfg, Sessionizer(cfg), FeatureAccumulator(cfg, keep_sessions=False))

    # ------------------------------------------------------------------ the stream
    def add(self, hits: pl.DataFrame, clock_limit: datetime) -> None:
        """Sessionized hits into the current window. Windows tile the data's time line: hits
        past the current window's end close it and start the next one at that end (lines
        dated past ``clock_limit`` move nothing)."""
        window = timedelta(seconds=self.cfg.state.window)
        self.touch(hits)
        hits = self._route_older(hits)
        while not hits.is_empty():
            lo, hi = hits.select(
                pl.col("ts").min().alias("lo"), pl.col("ts").filter(pl.col("ts") <= clock_limit).max().alias("hi")
            ).row(0)
            if self.window_start is None:
                # On a minute: per-minute peaks never straddle two windows.
                self.window_start = lo.replace(second=0, microsecond=0)
            end = self.window_start + window
            if hi is None or hi < end:
                self.current.add(hits)
                return
            inside = pl.col("ts") < end
            self.current.add(hits.filter(inside))
            hits = hits.filter(~inside)
            self.previous_acc, self.previous_start, self.previous = self.current, self.window_start, {}
            self.current, self.window_start = FeatureAccumulator(self.cfg, keep_sessions=False), end
            self.rolled = True

    def _route_older(self, hits: pl.DataFrame) -> pl.DataFrame:
        """Hits dated before the current window (a second log read after a newer one, lines
        that arrived late) go to the window of their time: the previous one, or none if older
        still (counted in ``aged_out``). Without a previous window the current one reaches back."""
        if self.window_start is None or hits.is_empty():
            return hits
        before = pl.col("ts") < self.window_start
        if not hits.select(before.any()).item():
            return hits
        older, hits = hits.filter(before), hits.filter(~before)
        if self.previous_acc is None:
            self.current.add(older)
            earliest = older["ts"].min()
            assert isinstance(earliest, datetime)
            self.window_start = min(self.window_start, earliest.replace(second=0, microsecond=0))
            return hits
        assert self.previous_start is not None
        kept = older.filter(pl.col("ts") >= self.previous_start)
        self.aged_out += len(older) - len(kept)
        if len(kept):
            self.previous_acc.add(kept)
            self.previous = {}  # changed: stored anew
        return hits

    def touch(self, hits: pl.DataFrame) -> None:
        """Note the clients of ``hits`` as changed since the kept rows were computed."""
        if len(hits):
            self.touched.append(hits["_ck"].unique())

    def rename_sources(self, renamed: dict[str, str]) -> None:
        """Follow rotated logs: carried sample lines name the log that holds them now."""
        if not renamed:
            return
        self.current.rename_sources(renamed)
        tail = self.sessionizer.tail
        if tail is not None and len(tail):  # held-back lines, read under the old name
            moved = rename_values(tail, "source", renamed)
            if moved is not None:
                self.sessionizer.tail = moved
        if self.previous_acc is not None and self.previous_acc.rename_sources(renamed):
            self.previous = {}  # changed: stored anew

    def count_lines(self, parsed: int, rejected: int) -> None:
        """This run's lines, credited to the window they ended in (a rough split on a roll)."""
        if self.rolled:
            self.previous_lines = (self.lines[0] + parsed, self.lines[1] + rejected)
            self.lines = (0, 0)
        else:
            self.lines = (self.lines[0] + parsed, self.lines[1] + rejected)

    @property
    def carried_lines(self) -> tuple[int, int]:
        return (self.lines[0] + self.previous_lines[0], self.lines[1] + self.previous_lines[1])

    @property
    def windows(self) -> list[FeatureAccumulator]:
        """The current window's accumulator and, once there is one, the previous window's."""
        return [a for a in (self.current, self.previous_acc) if a is not None]

    def _sketches(self, name: str) -> list[sketches.Registers]:
        """Both windows' sketch ``name``, where they have it."""
        return [a.sketches[name] for a in self.windows if name in a.sketches]

    @property
    def span_start(self) -> datetime | None:
        """Where the traffic this run judges starts: the previous window's start, if any."""
        return self.previous_start or self.window_start

    # ------------------------------------------------------------------ storage
    @classmethod
    def load(cls, cfg: Config, blobs: dict[str, bytes]) -> tuple[Carry, str | None]:
        """The carry stored in ``blobs``, or a fresh one and the reason the stored one cannot
        be used (None when there was none)."""
        if "meta" not in blobs:
            return cls.fresh(cfg), None
        try:
            meta = json.loads(blobs["meta"])
        except ValueError:
            meta = {}
        if meta.get("format") != FORMAT:
            return cls.fresh(cfg), "the carried state was written by another botguard version"
        if meta.get("shaping") != shaping_hash(cfg):
            return cls.fresh(cfg), (
                "the settings that shape features (ingest, session, site, catalogue or sketches) "
                "changed since the carried state was written"
            )

        def frames(prefix: str) -> dict[str, pl.DataFrame]:
            return {k[len(prefix):]: _frame(v) for k, v in blobs.items() if k.startswith(prefix)}

        try:
            carry = cls(
                cfg,
                Sessionizer.from_frames(cfg, frames("sess.")),
                FeatureAccumulator.from_frames(cfg, frames("cur."), meta["current"]),
                window_start=_ts(meta["window_start"]),
                last_ts=_ts(meta["last_ts"]),
                cursors=[Cursor.from_dict(c) for c in meta["cursors"]],
                previous={k: v for k, v in blobs.items() if k.startswith("prev.")},
                previous_start=_ts(meta.get("previous_start")),
                lines=tuple(meta.get("lines", (0, 0))),  # type: ignore[arg-type]
                previous_lines=tuple(meta.get("previous_lines", (0, 0))),  # type: ignore[arg-type]
                format=meta.get("log_format"),
                format_sniffed=bool(meta.get("format_sniffed", False)),
                parser_columns=meta.get("parser_columns"),
                inferred_products=meta.get("inferred_products"),
                columns_seen=set(meta.get("columns_seen", [])),
            )
            if blobs.get("res.meta") == _rows_meta() and "res.clients" in blobs:
                carry.kept_rows = _frame(blobs["res.clients"])
            if blobs.get("res.agents.meta") == _agents_meta(cfg) and "res.agents" in blobs:
                carry.kept_agents = _frame(blobs["res.agents"])
            if carry.previous:
                # Read now: damage shows here, not mid-run.
                counters = meta["previous"]
                carry.previous_acc = FeatureAccumulator.from_frames(cfg, frames("prev."), counters)
                carry.previous["prev.meta"] = json.dumps(counters).encode()
        except Exception as exc:  # any damage means the same: start over
            return cls.fresh(cfg), f"the carried state could not be read ({type(exc).__name__}: {str(exc)[:120]})"
        return carry, None

    def seal(self, stats: ParseStats, cursors: list[Cursor]) -> None:
        """Serialize the state at the end of a run's stream, before the held-back lines are
        flushed and the previous window merged in for this run's results."""
        if stats.last_ts is not None:
            self.last_ts = stats.last_ts if self.last_ts is None else max(self.last_ts, stats.last_ts)
        self.columns_seen |= stats.columns_seen
        self.format = stats.format or self.format
        self.count_lines(stats.parsed, stats.rejected)
        self.cursors = cursors
        blobs: dict[str, bytes] = {f"sess.{k}": _frame_bytes(v) for k, v in self.sessionizer.to_frames().items()}
        current, counters = self.current.to_frames()
        blobs.update({f"cur.{k}": _frame_bytes(v) for k, v in current.items()})
        previous_meta: dict[str, int] | None = None
        if self.previous:  # as loaded: unchanged
            blobs.update({k: v for k, v in self.previous.items() if k != "prev.meta"})
            previous_meta = json.loads(self.previous["prev.meta"])
        elif self.previous_acc is not None:  # closed during this run
            frames, previous_meta = self.previous_acc.to_frames()
            blobs.update({f"prev.{k}": _frame_bytes(v) for k, v in frames.items()})
        blobs["meta"] = json.dumps({
            "format": FORMAT,
            "shaping": shaping_hash(self.cfg),
            "window_start": _iso(self.window_start),
            "previous_start": _iso(self.previous_start),
            "last_ts": _iso(self.last_ts),
            "current": counters,
            "previous": previous_meta,
            "cursors": [c.to_dict() for c in cursors],
            "columns_seen": sorted(self.columns_seen),
            "lines": list(self.lines),
            "previous_lines": list(self.previous_lines),
            "log_format": self.format,
            "format_sniffed": self.format_sniffed,
            "parser_columns": self.parser_columns,
            "inferred_products": self.inferred_products,
        }).encode()
        self.sealed = blobs

    # ------------------------------------------------------------------ the results
    def judge(self) -> Judged:
        """This run's client rows and what goes with them, over both windows, after ``seal``
        (and after the held-back lines were added to the current window).

        A cron run sees a few minutes of traffic, from a small share of the clients. The
        rows of the others are those the previous run computed, kept in the carry: only the
        clients this run touched are computed again, from their part of each window's
        state. Merging the whole previous window into the current one and folding every
        client's state, as one pass does, cost O(state) per run (0.7 s of a 2.3 s cron run
        with 10,000 clients). The columns that depend on every client (clients per agent,
        catalogue coverage) are computed over all of them. A window that closed in this run,
        or a carry without kept rows, takes the whole way; both ways give the same rows
        (tested)."""
        cur, prev = self.current, self.previous_acc
        n_sessions = cur.total_sessions() + (prev.total_sessions() if prev is not None else 0)
        judged = None
        if self.kept_rows is not None and not self.rolled:
            judged = self._judge_touched(n_sessions)
        if judged is None:
            if prev is not None:
                cur.absorb(prev)
            rows = cur.client_rows()
            clients = (
                finish_clients(rows, cur.total_products(), cur.regs.get("agent_clients"), cur.p)
                if len(rows) else pl.DataFrame()
            )
            judged = Judged(clients, rows, cur.ua_counts, cur.samples(), cur.timeline, n_sessions,
                            cur.sketches.get("products"))
        if self.sealed is not None:
            self.sealed["res.meta"] = _rows_meta()
            self.sealed["res.clients"] = _frame_bytes(judged.rows)
        return judged

    def agent_table(self, agent_process: AgentProcess) -> Callable[[], pl.DataFrame]:
        """Start the agent table (``features.agent_table``) of both windows' agents; the
        returned callable finishes it and keeps it for the next run. Rows of the agents the
        kept table holds are reused and only the others are parsed (in ``agent_process``,
        while the clients are judged): parsing is pure Python, once per agent, and a cron run
        mostly sees agents an earlier run parsed. The version lag, the one column that
        depends on the other agents, is then computed over all of them."""
        from botguard.features.agent import version_lag

        accs = self.windows
        for acc in accs:
            acc.finish_parts()
        counts = [a.ua_counts["user_agent"] for a in accs if a.ua_counts is not None]
        if not counts:
            return pl.DataFrame
        known, new = self.split_agents(pl.concat(counts))
        job = agent_process.submit(new, self.cfg) if len(new) else pl.DataFrame

        def finish() -> pl.DataFrame:
            table = job()
            if known is not None and len(known):
                both = pl.concat([known, table], how="vertical_relaxed") if len(table) else known
                table = version_lag(both).sort("user_agent", nulls_last=False)
            if self.sealed is not None and len(table):
                self.sealed["res.agents.meta"] = _agents_meta(self.cfg)
                self.sealed["res.agents"] = _frame_bytes(table)
            return table

        return finish

    def split_agents(self, seen: pl.Series) -> tuple[pl.DataFrame | None, pl.Series]:
        """The kept agent table's rows of the ``seen`` agents, and the distinct agents it lacks."""
        from botguard.features.agent import agent_key

        keys = seen.to_frame("user_agent").select(agent_key(pl.col("user_agent")).alias("user_agent")).unique()
        if self.kept_agents is None:
            return None, keys.to_series()
        known = self.kept_agents.join(keys, on="user_agent", how="semi", nulls_equal=True)
        new = keys.join(self.kept_agents.select("user_agent"), on="user_agent", how="anti", nulls_equal=True)
        return known, new.to_series()

    def _judge_touched(self, n_sessions: int) -> Judged | None:
        assert self.kept_rows is not None
        cur, prev = self.current, self.previous_acc
        touched = (
            pl.concat(self.touched).unique() if self.touched else pl.Series("_ck", [], dtype=pl.UInt64)
        )
        part = cur.restricted(touched)
        if prev is not None:
            part.absorb(prev.restricted(touched))
        fresh = part.client_rows()
        kept = self.kept_rows.filter(~pl.col("_ck").is_in(touched.implode()))
        if len(fresh) and fresh.columns != kept.columns:
            return None  # kept by another version of the features: the whole way
        rows = pl.concat([kept, fresh], how="vertical_relaxed") if len(fresh) else kept
        # Agent counts, samples and the hourly timeline of both windows, merged as a whole
        # absorb merges them (they are small: a row per client and agent, or per hour).
        light = cur.side_frames()
        if prev is not None:
            light.absorb(prev.side_frames())
        light.finish_sketches()  # the agent → clients sketch, from every (client, agent) pair
        catalogues = self._sketches("catalogue")
        seen = sketches.RegisterUnion(catalogues).estimate("_all", cur.p) if catalogues else None
        total = float(seen["distinct"][0]) if seen is not None and len(seen) else 0.0
        clients = finish_clients(rows, total, light.regs.get("agent_clients"), cur.p) if len(rows) else pl.DataFrame()
        products = self._sketches("products")
        return Judged(clients, rows, light.ua_counts, light.samples(), light.timeline, n_sessions,
                      sketches.RegisterUnion(products) if products else None)


@dataclass
class Judged:
    """What ``Carry.judge`` gives the feature stage: the finished client rows, the rows to
    keep for the next run, and the frames built beside them."""

    clients: pl.DataFrame
    rows: pl.DataFrame
    ua_counts: pl.DataFrame | None
    samples: pl.DataFrame
    timeline: pl.DataFrame | None
    n_sessions: int
    product_regs: Any


def _rows_meta() -> bytes:
    """Kept rows are only read back by the botguard that wrote them (their columns are its)."""
    return json.dumps({"version": __version__, "format": FORMAT}).encode()


def _agents_meta(cfg: Config) -> bytes:
    """A kept agent table is only read back under the botguard and config that built it."""
    return json.dumps({"version": __version__, "format": FORMAT, "config": config_hash(cfg)}).encode()
