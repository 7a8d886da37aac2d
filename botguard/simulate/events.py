"""Request events as parallel integer arrays: the one currency of the simulation.

Generators never build strings. Every event is a row of small integers (which source, which agent,
which path, what status) so that millions of requests can be made, sorted and merged with numpy,
and the writer turns indices into text exactly once, at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

METHODS = ("GET", "POST", "HEAD")
GET, POST, HEAD = 0, 1, 2

#: Referer code for "no referer" (logged as ``-``). Codes ``0..P-1`` are the shop's own pages
#: (path indices); codes ``>= P`` are external referers (search engines, social sites).
NO_REFERER = -1

_DTYPES: dict[str, type[np.generic]] = {
    "ts_ms": np.int64,
    "src": np.int32,
    "ua": np.int32,
    "method": np.int8,
    "path": np.int32,
    "status": np.int16,
    "size": np.int32,
    "referer": np.int32,
}


@dataclass
class Events:
    """Columns of one batch of requests; ``ts_ms`` counts milliseconds from the simulation start."""

    ts_ms: np.ndarray
    src: np.ndarray
    ua: np.ndarray
    method: np.ndarray
    path: np.ndarray
    status: np.ndarray
    size: np.ndarray
    referer: np.ndarray

    @classmethod
    def build(cls, **columns: np.ndarray) -> Events:
        """Cast every column to its compact dtype (keeps memory per event at 31 bytes)."""
        return cls(**{name: np.asarray(columns[name], dtype=dt) for name, dt in _DTYPES.items()})

    @classmethod
    def empty(cls) -> Events:
        return cls(**{name: np.empty(0, dtype=dt) for name, dt in _DTYPES.items()})

    @classmethod
    def concat(cls, parts: Sequence[Events]) -> Events:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def take(self, index: np.ndarray) -> Events:
        return Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])
