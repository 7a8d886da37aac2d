"""Feature state carried from one incremental run to the next.

A cron job that runs every few minutes should read only the lines written since the last run,
yet judge each client on hours of its traffic. The carry holds what the stream would have
held had it never stopped: the sessionizer's last hit per client and its held-back lines, and
the accumulator's per-client sums, histograms, agent counts, first hits and sketch registers.
All of it is per client, none of it is hits, so it stays the size of the client population.

Evidence must also age out, or a carrier NAT would pile up a month of product pages. The
carry keeps two windows: the current one, which the stream adds to, and the previous one,
frozen. Once the current one spans ``state.window`` it becomes the previous one and a new one
starts; decisions read both, so a client is judged on one to two windows of its traffic.

The carry is only valid for the settings that shaped it (formats, client key, session gap,
URL patterns, sketch precision): when they change, the run starts over from the logs.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from botguard.config.models import Config
from botguard.features.aggregate import FeatureAccumulator
from botguard.ingest import ParseStats
from botguard.sessionize import Sessionizer
from botguard.sources.cursors import Cursor

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
    """The state of an incremental analysis (see the module docstring)."""

    sessionizer: Sessionizer
    current: FeatureAccumulator
    window_start: datetime | None = None
    last_ts: datetime | None = None
    cursors: list[Cursor] = field(default_factory=list)
    #: The previous window, kept serialized: it is read once per run, never changed.
    previous: dict[str, bytes] = field(default_factory=dict)
    previous_start: datetime | None = None
    previous_acc: FeatureAccumulator | None = None
    #: Set by ``seal``: the blobs to store, and whether the current window was just closed.
    sealed: dict[str, bytes] | None = None
    rolled: bool = False
    #: Optional fields (referer, agent …) seen on some line of the carried traffic.
    columns_seen: set[str] = field(default_factory=set)

    @classmethod
    def fresh(cls, cfg: Config) -> Carry:
        return cls(Sessionizer(cfg), FeatureAccumulator(cfg, keep_sessions=False))

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
                Sessionizer.from_frames(cfg, frames("sess.")),
                FeatureAccumulator.from_frames(cfg, frames("cur."), meta["current"]),
                window_start=_ts(meta["window_start"]),
                last_ts=_ts(meta["last_ts"]),
                cursors=[Cursor.from_dict(c) for c in meta["cursors"]],
                previous={k: v for k, v in blobs.items() if k.startswith("prev.")},
                previous_start=_ts(meta.get("previous_start")),
                columns_seen=set(meta.get("columns_seen", [])),
            )
            if carry.previous:
                carry.previous["prev.meta"] = json.dumps(meta["previous"]).encode()
                # Read now: damage shows here, not mid-run.
                carry.previous_acc = carry._read_previous(cfg)
        except Exception as exc:  # any damage means the same: start over
            return cls.fresh(cfg), f"the carried state could not be read ({type(exc).__name__}: {str(exc)[:120]})"
        return carry, None

    def _read_previous(self, cfg: Config) -> FeatureAccumulator:
        counters = json.loads(self.previous["prev.meta"])
        frames = {k[5:]: _frame(v) for k, v in self.previous.items() if k != "prev.meta"}
        return FeatureAccumulator.from_frames(cfg, frames, counters)

    def seal(self, cfg: Config, stats: ParseStats, cursors: list[Cursor]) -> None:
        """Serialize the state at the end of a run's stream (before the held-back lines are
        flushed for this run's results), closing the current window if it is full."""
        first_ts, last_ts = stats.first_ts, stats.last_ts
        self.columns_seen |= stats.columns_seen
        if first_ts is not None and self.window_start is None:
            self.window_start = first_ts
        if last_ts is not None:
            self.last_ts = last_ts if self.last_ts is None else max(self.last_ts, last_ts)
        self.cursors = cursors
        current, counters = self.current.to_frames()
        window = timedelta(seconds=cfg.state.window)
        self.rolled = bool(
            self.window_start is not None and self.last_ts is not None and self.last_ts - self.window_start >= window
        )
        blobs: dict[str, bytes] = {f"sess.{k}": _frame_bytes(v) for k, v in self.sessionizer.to_frames().items()}
        previous_meta: dict[str, int] | None
        if self.rolled:
            # The current window becomes the previous one; the next run starts a new one.
            blobs.update({f"prev.{k}": _frame_bytes(v) for k, v in current.items()})
            previous_meta, previous_start = counters, self.window_start
            current, counters, window_start = {}, {}, self.last_ts
        else:
            blobs.update({k: v for k, v in self.previous.items() if k != "prev.meta"})
            previous_meta = json.loads(self.previous["prev.meta"]) if self.previous else None
            previous_start, window_start = self.previous_start, self.window_start
        blobs.update({f"cur.{k}": _frame_bytes(v) for k, v in current.items()})
        blobs["meta"] = json.dumps({
            "format": FORMAT,
            "shaping": shaping_hash(cfg),
            "window_start": _iso(window_start),
            "previous_start": _iso(previous_start),
            "last_ts": _iso(self.last_ts),
            "current": counters,
            "previous": previous_meta,
            "cursors": [c.to_dict() for c in cursors],
            "columns_seen": sorted(self.columns_seen),
        }).encode()
        self.sealed = blobs

    @property
    def span_start(self) -> datetime | None:
        """Where the traffic this run judges starts: the previous window's start, if any."""
        if self.rolled:
            return self.window_start
        return self.previous_start or self.window_start
