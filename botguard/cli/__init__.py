"""botguard.cli: the Typer command line over the library.

Importing this package tunes Polars' allocator before Polars loads (a library must not do
that to its host process; the CLI owns its process). jemalloc keeps freed pages for a while
before returning them, which saves page faults when the next batch allocates again, but
keeps them in the resident set meanwhile:

* ``features`` and ``analyze`` keep per-client state across batches. Pages handed back as
  soon as they age out (``muzzy_decay_ms:0``; Polars' default marks them ``MADV_FREE``,
  which the kernel only reclaims under pressure) keep peak RSS tied to that state rather than
  to the length of the log, for about 5% more time on 10M lines.
* ``parse`` keeps no state: freed pages are kept five seconds, which saves a third of its
  system time (10M lines: 10.9 → 10.0 s, peak RSS 420 → 500 MiB).

A ``_RJEM_MALLOC_CONF`` set by the user wins. bench/README.md has the measurements.

Two more settings for the same reason:

* The cyclic garbage collector runs a young collection every 700 new container objects. The
  imports of a run (Typer, Polars, pydantic and the config models) create about 90,000 that
  live as long as the process, and were walked again and again: 10-15% of the start-up
  (0.35 -> 0.30 s to a loaded config). A run builds few cycles; collecting every 100,000
  allocations still frees them.
* numpy's OpenBLAS starts a thread per core that spins after each call. botguard's matrix
  work is small (a model over the clients' rows) and runs beside Polars' threads, which the
  spinning slowed: one BLAS thread, unless ``OPENBLAS_NUM_THREADS`` is set.
"""

import gc
import os
import sys

_STATELESS = "dirty_decay_ms:5000,muzzy_decay_ms:5000"
_STATEFUL = "muzzy_decay_ms:0"


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv[1:] if not a.startswith("-")), None)


os.environ.setdefault("_RJEM_MALLOC_CONF", _STATELESS if _command(sys.argv) == "parse" else _STATEFUL)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
gc.set_threshold(100_000, 50, 100)
