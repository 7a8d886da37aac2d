"""Benchmark: render and atomically write every export format for 100,000 entries.

Target: under 2 s in total on a 2-core machine. Run: ``python bench/bench_export.py [N]``.
The entries are synthetic but realistic in shape: mostly IPv4 hosts, some IPv6 hosts, some
networks that overlap the hosts (so covering and collapsing do real work), and duplicates.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from botguard.schema import BLOCK_ENTRIES_SCHEMA, conform
from botguard.sinks.export import FORMATS, prepare, write_export

AS_OF = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REASONS = ["rate_high", "ua_library", "no_assets", "catalogue_sweep", "night_activity"]


def build_entries(n: int, seed: int = 7) -> pl.DataFrame:
    """``n`` rows: 75% IPv4 hosts, 15% IPv6 hosts, 8% IPv4 /24, 2% IPv6 /64, ~1% duplicates."""
    rng = random.Random(seed)
    entries: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.75:
            entries.append(
                ".".join(
                    str(rng.randint(1, 223) if i == 0 else rng.randint(0, 255)) for i in range(4)
                )
            )
        elif r < 0.90:
            entries.append(
                f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
            )
        elif r < 0.98:
            entries.append(
                f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"
            )
        else:
            entries.append(f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::/64")
    for i in range(0, n, 100):
        entries[i] = entries[(i * 7919) % n]
    first = [AS_OF - timedelta(seconds=rng.randint(0, 86_400)) for _ in range(n)]
    frame = pl.DataFrame(
        {
            "entry": entries,
            "action": ["block"] * n,
            "score": [round(rng.uniform(0.5, 1.0), 3) for _ in range(n)],
            "reasons": [rng.sample(REASONS, rng.randint(1, 3)) for _ in range(n)],
            "clients": [rng.randint(1, 40) for _ in range(n)],
            "first_seen": first,
            "last_seen": [f + timedelta(seconds=rng.randint(0, 3600)) for f in first],
            "expires": [AS_OF + timedelta(hours=24)] * n,
        }
    )
    return conform(frame, BLOCK_ENTRIES_SCHEMA)


def run(n: int = 100_000) -> dict[str, object]:
    """Validate once, then render and atomically write every format; seconds per step.

    ``total_s`` (wall) covers everything after building the input frame: validation (cold, in
    a fresh process the parse cache is empty), every render and every write with its fsyncs.
    ``cpu_s`` is the process CPU time over the same span (all threads), a steadier figure on a
    busy machine.
    This is how the pipeline should export several formats: :func:`prepare` once, then
    :func:`write_export` per format.
    """
    entries = build_entries(n)
    rows: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory(prefix="botguard-bench-") as tmp:
        start = time.perf_counter()
        cpu_start = time.process_time()
        prepared = prepare(entries)
        rows["(validate)"] = {
            "seconds": time.perf_counter() - start,
            "written": prepared.normalized.frame.height,
            "bytes": 0,
        }
        for name, spec in FORMATS.items():
            t0 = time.perf_counter()
            result = write_export(
                prepared, name, Path(tmp) / f"out-{name}{spec.suffix}", generated_at=AS_OF
            )
            rows[name] = {
                "seconds": time.perf_counter() - t0,
                "written": result.written,
                "bytes": sum(p.stat().st_size for p in result.paths),
            }
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    return {
        "n": n,
        "total_s": total,
        "cpu_s": cpu,
        "formats": rows,
        "load_avg_1m": os.getloadavg()[0],
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    result = run(n)
    formats = result["formats"]
    assert isinstance(formats, dict)
    print(f"{'format':<12} {'seconds':>8} {'written':>9} {'bytes':>11}")
    for name, row in formats.items():
        print(f"{name:<12} {row['seconds']:>8.3f} {row['written']:>9} {row['bytes']:>11}")
    print(
        f"{'total':<12} {result['total_s']:>8.3f}   ({result['n']} entries, target < 2 s; "
        f"CPU {result['cpu_s']:.3f} s; load average {result['load_avg_1m']:.2f})"
    )


if __name__ == "__main__":
    main()
