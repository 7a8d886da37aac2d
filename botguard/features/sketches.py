"""HyperLogLog distinct counts, vectorized: registers from Polars hashes, merged across batches.

Why not ``HyperLogLog.add`` per value: it hashes in Python, one call per row. Here the hash
and register update are Polars expressions (one pass per batch), registers are kept sparse as
(key, register, rank) rows and merged with ``max`` — associative, so results do not depend on
batch boundaries. The estimator is the ``hyperloglog`` package's (same alpha, thresholds and
HLL++ bias tables), applied to all keys at once; ``to_hll`` rebuilds a package object for any
key so the two can be compared.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hyperloglog import hll as _hll

HASH_SEED = 0x6B6F7462  # fixed: sketches from one run merge with each other
KEY_SEED = 0x62677264  # a different seed for the keys than for the values being counted


def key_hash(expr: pl.Expr) -> pl.Expr:
    """Compact 64-bit key for a client or agent string (collisions: ~1 in 10^10 for 10^5 keys)."""
    return expr.hash(seed=KEY_SEED)


def registers(df: pl.LazyFrame | pl.DataFrame, keys: list[str], value: pl.Expr, p: int) -> pl.LazyFrame:
    """(keys..., reg, rank) with the max rank per register for the non-null ``value``s."""
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    h = value.hash(seed=HASH_SEED)
    m = 1 << p
    w = h // m
    # rank = position of the first 1-bit in the remaining (64 - p) bits, as the package does.
    rank = (w.bitwise_leading_zeros().cast(pl.Int16) - p + 1).clip(1, 64 - p + 1).cast(pl.UInt8)
    return (
        lf.filter(value.is_not_null())
        .select(*[pl.col(k) for k in keys], (h % m).cast(pl.UInt16).alias("reg"), rank.alias("rank"))
        .group_by([*keys, "reg"])
        .agg(pl.col("rank").max())
    )


#: Register state is kept in this many slices of the key space, each merged on its own: the
#: group-by's hash tables and copies then hold a sixteenth of the state at a time, which is
#: what keeps long logs from raising the peak memory at every merge.
SLICES = 16


def _empty(keys: list[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{k: pl.UInt64 for k in keys}, "reg": pl.UInt16, "rank": pl.UInt8})


def _max_rank(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty(keys)
    return pl.concat(frames).group_by([*keys, "reg"]).agg(pl.col("rank").max())


def merge_sliced(
    state: list[pl.DataFrame] | None, frames: list[pl.DataFrame], keys: list[str]
) -> list[pl.DataFrame]:
    """``frames`` merged into ``state`` (``SLICES`` frames, sliced by the first key)."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return state or [_empty(keys) for _ in range(SLICES)]
    state = state or [frames[0].clear() for _ in range(SLICES)]
    new = pl.concat(frames)
    key = pl.col(keys[0]) if new.schema[keys[0]].is_integer() else pl.col(keys[0]).hash(seed=KEY_SEED)
    new = new.with_columns((key % SLICES).cast(pl.Int64).alias("_slice"))
    parts = {k[0]: f for k, f in new.partition_by("_slice", include_key=False, as_dict=True).items()}
    del new
    out = []
    for i, old in enumerate(state):
        part = parts.pop(i, None)
        out.append(old if part is None else _max_rank([old, part], keys))
    return out


def merge(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """Registers of several partial sketches merged into one (max rank per register)."""
    return pl.concat(merge_sliced(None, frames, keys), rechunk=False)


def estimate(regs: pl.DataFrame, keys: list[str], p: int, name: str = "distinct") -> pl.DataFrame:
    """Cardinality per key, as ``hyperloglog.HyperLogLog.card()`` would compute it."""
    m = 1 << p
    alpha = _hll.get_alpha(p)
    agg = regs.group_by(keys).agg(
        pl.len().alias("_nonzero"),
        (2.0 ** (-pl.col("rank").cast(pl.Float64))).sum().alias("_sum"),
    )
    if agg.is_empty():
        return agg.select(*keys, pl.lit(0.0).alias(name))
    nonzero = agg["_nonzero"].to_numpy().astype(np.float64)
    zeros = m - nonzero
    harmonic = agg["_sum"].to_numpy() + zeros  # empty registers contribute 2^0 each
    raw = alpha * m * m / harmonic
    with np.errstate(divide="ignore"):
        lc = np.where(zeros > 0, m * np.log(m / np.maximum(zeros, 1)), np.inf)
    use_lc = (zeros > 0) & (lc <= _hll.get_treshold(p))
    est = np.where(use_lc, lc, raw)
    # HLL++ bias correction: only for the (few) mid-range keys linear counting does not cover.
    mid = ~use_lc & (raw <= 5 * m)
    if mid.any():
        est[mid] = raw[mid] - np.array([_hll.estimate_bias(e, p) for e in raw[mid]])
    return agg.select(keys).with_columns(pl.Series(name, est, dtype=pl.Float64))


def to_hll(regs: pl.DataFrame, p: int) -> _hll.HyperLogLog:
    """A ``hyperloglog.HyperLogLog`` holding these registers (one key's rows)."""
    obj = _hll.HyperLogLog(0.2)  # then overwrite precision and registers
    obj.p = p
    obj.m = 1 << p
    obj.alpha = _hll.get_alpha(p)
    obj.M = np.zeros(obj.m, dtype=obj.M.dtype)
    obj.M[regs["reg"].to_numpy().astype(np.int64)] = regs["rank"].to_numpy()
    return obj
