"""Atomic writes live in :mod:`botguard.atomic` (every stage that writes files uses them);
re-exported here for the sinks."""

from botguard.atomic import DEFAULT_MODE, atomic_file, atomic_write

__all__ = ["DEFAULT_MODE", "atomic_file", "atomic_write"]
