"""Synthetic, labelled web-shop traffic: an access log, its labels and the operators' ranges.

``simulate(out_dir, seed=..., hours=..., clients=...)`` writes

* ``access.log`` — combined format, UTC, sorted by time;
* ``labels.csv`` — ``ip,label,kind`` for every address in the log (label: human, good_bot,
  bad_bot; kind: one of ``KINDS``);
* ``ranges/`` — ``googlebot.json`` and ``bingbot.json`` (Google's format), ``uptimerobot.ips``
  and ``ip-ranges.json`` (AWS's format) covering the rented servers of bad bots, VPN users and
  hosted link-preview fetchers and feed readers.

Output depends only on the arguments: the same seed gives byte-identical files, and no wall
clock is read. The shop's URL layout is ``LAYOUTS[seed % 5]`` (Shopify-like ``/products/<h>``,
``/p/<id>``, ``/item/<id>.html``, ``/<slug>-p-<id>.html``, ``/dp/<ASIN>``), so training over
several seeds does not teach one layout.

Size. ``clients`` counts actors: a person, a bot, a carrier-NAT address (10-40 people), a
link-preview service (a few fetcher addresses) or a swarm (30-200 addresses) is one client;
~70% are human kinds, ~7.5% good bots, the rest bad bots, every kind present once
``clients >= 100``. Lines grow linearly with ``clients`` and affinely with ``hours``, because
every client appears at least once (a person's first visit, a scraper's first job), so short
periods carry a fixed part. Fitted over seeds 1-5 (within ~9%)::

    lines ≈ clients * (LINES_PER_CLIENT + LINES_PER_CLIENT_HOUR * hours)   # 64 + 3.5 * hours

i.e. ~68 lines per client for 1 h and ~150 for 24 h; ``estimate_lines`` and
``clients_for_lines`` aim at a log size (2M lines over 24 h: ~13,500 clients; 10M: ~68,000).
Per actor and hour over 24 h: a first-time visitor ~3.1 lines (pages and their assets), a
returning one ~1.6 (a warm cache asks for little), an in-app visitor ~0.9, a bouncer ~0.6, a
hotlink ~0.2, a NAT address ~40, a monitor ~34, Googlebot ~16, scrapers and crawlers 12-23,
a probe ~4, a swarm ~75 (spread over its members), a preview service ~0.6. People make ~25%
of the lines, good bots ~20%.

People vary the way real visitors do (see ``kinds.py``, ``humans.py``): over a day about a
third of their sessions are one page and another fifth two or three, about half find the
theme in their cache (few or no assets, 304s), ~4% run browsers years out of date, some
come from an app's built-in browser or through a corporate proxy with an odd agent, and a
few read 20-60 pages in one sitting.

Speed. Requests are generated as integer arrays (numpy) one simulated hour at a time and
formatted by Polars on a writer thread, so memory stays bounded by about two hours of traffic:
on two cores ~0.5-0.9 M lines/s, and a 10M-line day peaks at ~400 MB resident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from botguard.simulate.addresses import write_ranges
from botguard.simulate.bots import expand_walks
from botguard.simulate.events import Events
from botguard.simulate.humans import expand_sessions
from botguard.simulate.kinds import KIND_LABELS, KINDS, kind_counts
from botguard.simulate.layouts import LAYOUTS
from botguard.simulate.plan import HOUR_MS, Plan, Table, make_plan
from botguard.simulate.shop import build_shop
from botguard.simulate.writer import CombinedLogWriter, write_labels

__all__ = [
    "DEFAULT_START",
    "KINDS",
    "KIND_LABELS",
    "SimulationResult",
    "clients_for_lines",
    "estimate_lines",
    "kind_counts",
    "simulate",
]

#: Start of the simulated period unless given: fixed, so output never depends on today.
DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)
LINES_PER_CLIENT = 64.0
LINES_PER_CLIENT_HOUR = 3.5

_STREAM_SESSIONS, _STREAM_WALKS = 1, 2


@dataclass(frozen=True)
class SimulationResult:
    """Where the files went and what is in them."""

    log_path: Path
    labels_path: Path
    ranges_dir: Path
    lines: int
    #: Actors per kind (a NAT address or a swarm counts once); sums to ``clients``.
    clients_by_kind: dict[str, int]
    #: Addresses per kind, i.e. rows of ``labels.csv``.
    addresses_by_kind: dict[str, int] = field(default_factory=dict)
    layout: str = ""
    start: datetime = DEFAULT_START
    end: datetime = DEFAULT_START
    seed: int = 1


def estimate_lines(hours: float, clients: int) -> int:
    """Expected number of log lines for ``hours`` and ``clients`` (within ~15%)."""
    return round(clients * (LINES_PER_CLIENT + LINES_PER_CLIENT_HOUR * hours))


def clients_for_lines(lines: int, hours: float) -> int:
    """``clients`` that make a log of about ``lines`` lines over ``hours``."""
    return max(1, math.ceil(lines / (LINES_PER_CLIENT + LINES_PER_CLIENT_HOUR * hours)))


def _rows(table: Table, lo: int, hi: int) -> Table:
    return {k: v[lo:hi] for k, v in table.items()}


def _window_rng(seed: int, window: int, stream: int) -> np.random.Generator:
    # one independent stream per (hour, generator): a window's traffic does not depend on
    # how much randomness earlier windows consumed
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, window, stream])))


def _generate(plan: Plan, seed: int, writer: CombinedLogWriter) -> None:
    """Expand the plan hour by hour, carrying requests that spill past an hour's end."""
    duration = plan.duration_ms
    s_t0, w_t0 = plan.sessions["t0"], plan.walks["t0"]
    carry = Events.empty()
    n_windows = math.ceil(duration / HOUR_MS)
    for window in range(n_windows):
        lo, hi = window * HOUR_MS, min((window + 1) * HOUR_MS, duration)
        s_lo, s_hi = np.searchsorted(s_t0, [lo, hi])
        w_lo, w_hi = np.searchsorted(w_t0, [lo, hi])
        batch = Events.concat([
            carry,
            expand_sessions(_rows(plan.sessions, int(s_lo), int(s_hi)), plan.shop,
                            _window_rng(seed, window, _STREAM_SESSIONS)),
            expand_walks(_rows(plan.walks, int(w_lo), int(w_hi)), plan.shop,
                         _window_rng(seed, window, _STREAM_WALKS)),
        ])
        # episodes starting later cannot reach back before ``hi``: everything earlier is final
        batch = batch.take(np.flatnonzero(batch.ts_ms < duration))
        done = batch.ts_ms < hi
        ready = batch.take(np.flatnonzero(done))
        carry = batch.take(np.flatnonzero(~done))
        writer.write(ready.take(np.argsort(ready.ts_ms, kind="stable")))


def simulate(out_dir: Path, *, seed: int = 1, hours: float = 24.0, clients: int = 500,
             start: datetime | None = None) -> SimulationResult:
    """Simulate ``hours`` of a shop's traffic from ``clients`` actors into ``out_dir``.

    Writes ``access.log``, ``labels.csv`` and ``ranges/`` (see the module docstring) and
    returns what was written. Raises ``ValueError`` for a negative seed, negative ``clients``
    or ``hours`` that is not a positive number.
    """
    if not (math.isfinite(hours) and hours > 0):
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    if clients < 0:
        raise ValueError(f"clients must be >= 0, got {clients!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    start = DEFAULT_START if start is None else start
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    shop_rng, plan_rng = (np.random.Generator(np.random.PCG64(s))
                          for s in np.random.SeedSequence(seed).spawn(2))
    shop = build_shop(seed % len(LAYOUTS), shop_rng)
    duration_ms = round(hours * HOUR_MS)
    plan = make_plan(plan_rng, shop, clients=clients, duration_ms=duration_ms, start=start)

    log_path = out_dir / "access.log"
    tmp = out_dir / ".access.log.tmp"
    try:
        with tmp.open("wb") as fh, CombinedLogWriter(fh, plan, start) as writer:
            _generate(plan, seed, writer)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave half a log behind
        raise
    tmp.replace(log_path)

    labels_path = out_dir / "labels.csv"
    addresses = write_labels(labels_path, plan, writer.seen)
    ranges_dir = out_dir / "ranges"
    write_ranges(ranges_dir, plan.uptimerobot, published=start - timedelta(hours=18, minutes=13))
    return SimulationResult(
        log_path=log_path,
        labels_path=labels_path,
        ranges_dir=ranges_dir,
        lines=writer.lines,
        clients_by_kind=dict(plan.actors_by_kind),
        addresses_by_kind={k: addresses.get(k, 0) for k in KINDS},
        layout=shop.layout,
        start=start,
        end=start + timedelta(milliseconds=duration_ms),
        seed=seed,
    )
