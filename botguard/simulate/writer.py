"""Turn sorted event batches into combined-format log lines, and write the labels.

Formatting is the expensive part of a multi-million line log, so nothing here loops per line:
each field is a string table (addresses, agents, paths, referers, one entry per second of the
batch) gathered by index in Polars and written by Polars' CSV writer with a space separator and
no quoting, which yields exactly::

    IP - - [02/Mar/2026:10:05:03 +0000] "GET /path?q HTTP/1.1" 200 5123 "referer" "agent"
"""

from __future__ import annotations

import csv
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from botguard.simulate.events import METHODS, Events
from botguard.simulate.kinds import KIND_LABELS
from botguard.simulate.plan import PROTOCOLS, Plan

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MINUTE_SECOND = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))


def escape(field: str) -> str:
    """Escape a quoted log field the way Apache does (``"`` and ``\\`` get a backslash)."""
    return field.replace("\\", "\\\\").replace('"', '\\"')


def _quoted(values: list[str]) -> pl.Series:
    return pl.Series([f'"{escape(v)}"' for v in values], dtype=pl.String)


class CombinedLogWriter:
    """Writes event batches of one plan to a binary file, remembering which sources appeared.

    Formatting and writing a batch runs on one background thread (Polars releases the GIL)
    while the caller generates the next batch; at most one batch waits, so memory stays
    bounded. Use as a context manager, or call ``close``.
    """

    def __init__(self, out: BinaryIO, plan: Plan, start: datetime) -> None:
        self.out = out
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botguard-simulate")
        self._pending: Future[None] | None = None
        # event times are ms after ``start``; the log shows whole UTC seconds
        self.start_ms = int(start.timestamp() * 1000)
        self.lines = 0
        self._hours: dict[int, list[str]] = {}
        shop = plan.shop
        self.seen = np.zeros(plan.src_addr.size, dtype=bool)
        addresses = [f"{a} - -" for a in plan.addresses]
        self._src_head = pl.Series(addresses, dtype=pl.String).gather(plan.src_addr)
        tails = pl.Series([f'{escape(p)}"' for p in PROTOCOLS], dtype=pl.String)
        self._src_tail = tails.gather(plan.src_proto.astype(np.int64))
        self._methods = pl.Series([f'"{m}' for m in METHODS], dtype=pl.String)
        self._paths = pl.Series([escape(p) for p in shop.paths], dtype=pl.String)
        host = shop.host
        self._referers = _quoted(["-"] + [host + p for p in shop.paths]
                                 + shop.external_referers)
        self._agents = _quoted(plan.agents)

    def _seconds(self, first_hour: int, last_hour: int) -> pl.Series:
        """``[dd/Mon/yyyy:HH:MM:SS +0000]`` for every second of the given epoch hours."""
        out: list[str] = []
        for hour in range(first_hour, last_hour + 1):
            if hour not in self._hours:
                t = datetime.fromtimestamp(hour * 3600, UTC)
                prefix = f"[{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year:04d}:{t.hour:02d}:"
                self._hours[hour] = [f"{prefix}{ms} +0000]" for ms in _MINUTE_SECOND]
            out.extend(self._hours[hour])
        # batches move forward in time: older hours are never needed again
        self._hours = {h: v for h, v in self._hours.items() if h >= first_hour}
        return pl.Series(out, dtype=pl.String)

    def write(self, ev: Events) -> None:
        """Append ``ev`` (already sorted by time) as log lines."""
        if not len(ev):
            return
        self.seen[ev.src] = True
        seconds = (ev.ts_ms + self.start_ms) // 1000
        first_hour, last_hour = int(seconds[0]) // 3600, int(seconds[-1]) // 3600
        frame = pl.DataFrame([
            self._src_head.gather(ev.src),
            self._seconds(first_hour, last_hour).gather(seconds - first_hour * 3600),
            self._methods.gather(ev.method.astype(np.int64)),
            self._paths.gather(ev.path),
            self._src_tail.gather(ev.src),
            pl.Series("status", ev.status),
            pl.Series("size", ev.size),
            self._referers.gather(ev.referer.astype(np.int64) + 1),
            self._agents.gather(ev.ua),
        ], schema=[f"c{i}" for i in range(9)])
        self._wait()
        # large batches: each batch is one call back into Python's file object
        self._pending = self._pool.submit(frame.write_csv, self.out, include_header=False,
                                          separator=" ", quote_style="never", batch_size=65536)
        self.lines += len(ev)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()  # re-raises a failed write (disk full) here
            self._pending = None

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> CombinedLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_labels(path: Path, plan: Plan, seen_sources: np.ndarray) -> Counter[str]:
    """``ip,label,kind`` for every address that appears in the log (IPv4 first, numerically)."""
    seen = np.unique(plan.src_addr[seen_sources]).tolist()
    seen.sort(key=plan.address_order.__getitem__)
    rows = [(plan.addresses[a], plan.address_kind[a]) for a in seen]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["ip", "label", "kind"])
        for ip, kind in rows:
            w.writerow([ip, KIND_LABELS[kind], kind])
    tmp.replace(path)
    return Counter(kind for _, kind in rows)
