"""Small Polars helpers shared by several stages."""

from __future__ import annotations

import polars as pl


def compact(df: pl.DataFrame) -> pl.DataFrame:
    """Copy string data out of the batch it came from. A few rows gathered from a batch keep
    views into that batch's whole string buffers; state kept across batches must not, or memory
    grows with the log instead of with the number of clients. (``rechunk`` does not always
    copy; building new strings does.)"""
    strings = [c for c, t in df.schema.items() if t == pl.String]
    if not strings:
        return df
    return df.with_columns([(pl.col(c) + pl.lit("")).alias(c) for c in strings])
