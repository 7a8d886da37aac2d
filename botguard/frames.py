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


def add_columns(df: pl.DataFrame, other: pl.DataFrame, on: str | list[str], **join: object) -> pl.DataFrame:
    """``df`` with ``other``'s columns looked up by ``on`` (a left join; ``on`` unique in
    ``other``), without copying ``df``'s own columns: the join runs on the key columns alone
    and its result is stacked beside ``df``. A wide frame (a row per client, ~150 columns)
    going through a chain of joins would otherwise be copied whole at each one."""
    keys = [on] if isinstance(on, str) else on
    looked = df.select(keys).join(other, on=keys, how="left", maintain_order="left", **join)  # type: ignore[arg-type]
    if len(looked) != len(df):
        raise ValueError(f"add_columns: {keys} is not unique in the looked-up frame")
    return df.hstack(looked.drop(keys))
