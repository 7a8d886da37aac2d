"""botguard.cli: the Typer command line over the library.

Importing this package tunes Polars' allocator before Polars loads (a library must not do
that to its host process; the CLI owns its process):

* Polars' jemalloc hands pages it no longer needs back with ``MADV_FREE`` after a second
  ("muzzy" decay): the kernel only takes them under memory pressure, so they stay in the
  resident set, and a run that streams batches through looks as if it grew with the length
  of the log. Releasing them at once (``muzzy_decay_ms:0``) keeps peak RSS tied to the
  clients, for a few percent more system time. A ``_RJEM_MALLOC_CONF`` set by the user wins.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "muzzy_decay_ms:0")
