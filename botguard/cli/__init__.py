"""botguard.cli: the Typer command line over the library.

Importing this package tunes the process for the pipeline's threads (a library must not do
that to its host process; the CLI owns its process):

* Polars' jemalloc hands pages it no longer needs back with ``MADV_FREE`` after a second
  ("muzzy" decay): the kernel only takes them under memory pressure, so they stay in the
  resident set, and a run that streams batches through looks as if it grew with the length
  of the log. Releasing them at once (``muzzy_decay_ms:0``) keeps peak RSS tied to the
  clients, for a few percent more system time. A ``_RJEM_MALLOC_CONF`` set by the user wins.
* The GIL switch interval drops from 5 ms to 0.2 ms. Agent parsing is pure Python and runs
  in a thread beside Polars work whose every call needs the GIL to start and to return; at
  5 ms each of those calls could wait a whole interval, which made the end of a run 0.1 s
  slower on the 2M-line bench log (bench/README.md).
"""

import os
import sys

os.environ.setdefault("_RJEM_MALLOC_CONF", "muzzy_decay_ms:0")
sys.setswitchinterval(0.0002)
