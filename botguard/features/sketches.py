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

#: Up to this many rows the state is one slice: each slice costs a query per merge and per
#: promotion (about a millisecond each), which on a small log (a cron run, a 10k-line file)
#: was most of the sketches' time and saves no memory worth having. Past it the state is
#: sliced, and stays sliced.
SLICE_ROWS = 1 << 17


def _empty(keys: list[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{k: pl.UInt64 for k in keys}, "reg": pl.UInt16, "rank": pl.UInt8})


def merge_sliced(
    state: list[pl.DataFrame] | None, frames: list[pl.DataFrame], keys: list[str]
) -> list[pl.DataFrame]:
    """``frames`` merged into ``state``: one frame, or ``SLICES`` frames sliced by the first
    key once the rows outgrow ``SLICE_ROWS``."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return state or [_empty(keys)]
    rows = sum(len(f) for f in state or []) + sum(len(f) for f in frames)
    n = SLICES if rows > SLICE_ROWS or (state is not None and len(state) == SLICES) else 1
    if state is not None and len(state) != n:
        # Outgrown one slice: its rows are sliced with the new ones (merging a register with
        # itself changes nothing: the max of equal ranks).
        frames, state = [*state, *frames], None
    new = pl.concat(frames)
    group = [*keys, "reg"]
    if n == 1:
        both = new if state is None else pl.concat([state[0], new])
        return [both.group_by(group).agg(pl.col("rank").max())]
    state = state or [new.clear() for _ in range(SLICES)]
    key = pl.col(keys[0]) if new.schema[keys[0]].is_integer() else pl.col(keys[0]).hash(seed=KEY_SEED)
    new = new.with_columns((key % SLICES).cast(pl.Int64).alias("_slice"))
    parts = {k[0]: f for k, f in new.partition_by("_slice", include_key=False, as_dict=True).items()}
    del new
    # One collect for all slices: a few calls into Polars rather than dozens, each of which
    # would wait for the GIL while the agent parser (pure Python) runs beside this merge.
    plans = {
        i: pl.concat([old.lazy(), parts.pop(i).lazy()]).group_by(group).agg(pl.col("rank").max())
        for i, old in enumerate(state) if i in parts
    }
    merged = dict(zip(plans, pl.collect_all(list(plans.values())), strict=True))
    return [merged.get(i, old) for i, old in enumerate(state)]


def merge(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """Registers of several partial sketches merged into one (max rank per register)."""
    return pl.concat(merge_sliced(None, frames, keys), rechunk=False)


class Registers:
    """Registers of many keys' sketches (one key column), merged batch after batch.

    A key with few distinct values keeps them as sparse (key, reg, rank) rows, 11 bytes each;
    once it has ``m / 8`` of them it moves to a dense row of ``m`` bytes, which is smaller and
    cannot grow. Scrapers that walk a whole catalogue fill thousands of registers each: dense,
    they stop making the state grow with the length of the log. Both forms give the same
    registers, so the same estimates.
    """

    #: A key goes dense at ``m // DENSE_DIVISOR`` sparse rows (break-even is about m / 11).
    DENSE_DIVISOR = 8

    #: Sparse rows of light keys wait in batches until this many, then merge into the state:
    #: merging after every batch would cost O(state) per batch.
    PENDING_ROWS = 500_000

    def __init__(self, key: str, p: int) -> None:
        self.key, self.p, self.m = key, p, 1 << p
        self.sparse: list[pl.DataFrame] | None = None
        self.pending: list[pl.DataFrame] = []
        self.index = pl.DataFrame(schema={key: pl.UInt64, "_row": pl.UInt32})  # dense keys
        self.dense = np.zeros((0, self.m), dtype=np.uint8)

    @property
    def dense_after(self) -> int:
        return max(1, self.m // self.DENSE_DIVISOR)

    def _sparse_rows(self) -> pl.DataFrame:
        return pl.concat(self.sparse, rechunk=False) if self.sparse else _empty([self.key])

    def __len__(self) -> int:
        """Number of keys with at least one register set."""
        self.flush()
        sparse = sum(f[self.key].n_unique() for f in self.sparse or [])
        return sparse + len(self.index)

    def is_empty(self) -> bool:
        """No register set (cheap: ``len`` merges the pending rows first)."""
        return not len(self.index) and not any(len(f) for f in [*(self.sparse or []), *self.pending])

    def _of(self, keys: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The sparse rows (one per register) and the dense index rows of ``keys``, without
        merging the pending rows of the other keys."""
        wanted = pl.col(self.key).is_in(keys.cast(pl.UInt64).implode())
        parts = [f.filter(wanted) for f in [*(self.sparse or []), *self.pending]]
        # Sparse rows of several slices and pending ones may repeat a register: one max each.
        sparse = pl.concat(parts).group_by([self.key, "reg"]).agg(pl.col("rank").max()) if parts else _empty([self.key])
        return sparse, self.index.filter(wanted)

    def restricted(self, keys: pl.Series) -> Registers:
        """A copy holding only the registers of ``keys``: what a result over those keys needs,
        without merging or copying the others (``FeatureAccumulator.restricted``)."""
        out = Registers(self.key, self.p)
        sparse, index = self._of(keys)
        out.sparse = [sparse] if len(sparse) else None
        if len(index):
            out.dense = self.dense[index["_row"].to_numpy()]  # a copy
            out.index = index.with_columns(pl.int_range(0, len(index), dtype=pl.UInt32).alias("_row"))
        return out

    def add(self, frames: list[pl.DataFrame]) -> None:
        """One batch's (key, reg, rank) rows, or several. Dense keys' rows are applied at once
        (a vectorized max into their rows); the others wait in ``pending``."""
        frames = [f for f in frames if len(f)]
        if not frames:
            return
        new = pl.concat(frames) if len(frames) > 1 else frames[0]
        if len(self.index):
            found = new.join(self.index, on=self.key, how="left")
            heavy = found.filter(pl.col("_row").is_not_null())
            if len(heavy):
                self._raise(heavy)
            new = found.filter(pl.col("_row").is_null()).drop("_row")
        self.pending.append(new)
        # A flush costs O(state): waiting for half the state's rows as well keeps logs with
        # many keys from flushing their whole state at every batch.
        state_rows = sum(len(f) for f in self.sparse or [])
        if sum(len(f) for f in self.pending) > max(self.PENDING_ROWS, state_rows // 2):
            self.flush()

    def flush(self) -> None:
        """Merge the pending rows into the state; keys grown past ``dense_after`` go dense."""
        if not self.pending:
            return
        frames, self.pending = self.pending, []
        touched = pl.concat([f.select(self.key) for f in frames]).to_series().unique()
        self.sparse = merge_sliced(self.sparse, frames, [self.key])
        self._promote(touched)

    def _raise(self, rows: pl.DataFrame) -> None:
        """Dense registers raised to the ranks of ``rows`` (``_row``, reg, rank)."""
        flat = rows["_row"].to_numpy().astype(np.int64) * self.m + rows["reg"].to_numpy()
        np.maximum.at(self.dense.reshape(-1), flat, rows["rank"].to_numpy())

    def _promote(self, touched: pl.Series) -> None:
        """Keys of ``touched`` that now have ``dense_after`` sparse rows move to dense rows."""
        assert self.sparse is not None
        wanted = touched.implode()
        counts = pl.concat(pl.collect_all([
            part.lazy().filter(pl.col(self.key).is_in(wanted)).group_by(self.key).len() for part in self.sparse
        ]))
        big = counts.filter(pl.col("len") >= self.dense_after)[self.key]
        if big.is_empty():
            return
        start = len(self.index)
        new_index = pl.DataFrame({
            self.key: big.cast(pl.UInt64),
            "_row": pl.int_range(start, start + len(big), dtype=pl.UInt32, eager=True),
        })
        self.index = pl.concat([self.index, new_index])
        if len(self.index) > len(self.dense):  # grow by doubling: few copies
            grown = np.zeros((max(len(self.index), 2 * len(self.dense)), self.m), dtype=np.uint8)
            grown[: len(self.dense)] = self.dense
            self.dense = grown
        leaving = pl.col(self.key).is_in(big.implode())
        n = len(self.sparse)
        split = pl.collect_all(
            [part.lazy().filter(leaving) for part in self.sparse]
            + [part.lazy().filter(~leaving) for part in self.sparse]
        )
        self._raise(pl.concat(split[:n]).join(new_index, on=self.key, how="inner"))
        self.sparse = split[n:]

    def to_frames(self) -> dict[str, pl.DataFrame]:
        """The registers as frames (to carry them to a later run, see ``from_frames``). Pending
        rows are stored as they are: merging them costs O(state), which the run that needs the
        estimates pays anyway."""
        dense = self.dense[: len(self.index)]
        return {
            "sparse": self._sparse_rows(),
            "pending": pl.concat(self.pending) if self.pending else _empty([self.key]),
            "index": self.index,
            "dense": pl.DataFrame({"row": pl.Series(dense)}) if len(dense) else pl.DataFrame(),
        }

    @classmethod
    def from_frames(cls, key: str, p: int, frames: dict[str, pl.DataFrame]) -> Registers:
        regs = cls(key, p)
        sparse = frames["sparse"]
        if len(sparse) > SLICE_ROWS:
            # Back into the slices ``merge_sliced`` keeps (by key), or the next merge re-slices.
            slot = (pl.col(key) % SLICES).cast(pl.Int64).alias("_slice")
            parts = sparse.with_columns(slot).partition_by("_slice", include_key=False, as_dict=True)
            regs.sparse = [parts.get((i,), sparse.clear()) for i in range(SLICES)]
        else:
            regs.sparse = [sparse] if len(sparse) else None
        pending = frames.get("pending")
        regs.pending = [pending] if pending is not None and len(pending) else []
        regs.index = frames["index"]
        dense = frames["dense"]
        regs.dense = (
            np.array(dense["row"].to_numpy(), dtype=np.uint8).reshape(-1, regs.m)  # a writable copy
            if len(dense) else np.zeros((0, regs.m), dtype=np.uint8)
        )
        if len(regs.dense) != len(regs.index):
            raise ValueError(f"{key}: {len(regs.dense)} dense rows for {len(regs.index)} keys")
        return regs

    def merge(self, other: Registers) -> None:
        """Raise these registers to ``other``'s (the sketch of the union of both sets). Dense
        rows merge as arrays; a key dense in ``other`` only becomes dense here too."""
        self.flush()
        other.flush()
        key = self.key
        if len(other.index):
            pairs = other.index.join(self.index, on=key, how="left", suffix="_mine")
            both = pairs.filter(pl.col("_row_mine").is_not_null())
            if len(both):
                mine, theirs = both["_row_mine"].to_numpy(), both["_row"].to_numpy()
                self.dense[mine] = np.maximum(self.dense[mine], other.dense[theirs])
            new = pairs.filter(pl.col("_row_mine").is_null())
            if len(new):
                start = len(self.index)
                new_index = pl.DataFrame({
                    key: new[key], "_row": pl.int_range(start, start + len(new), dtype=pl.UInt32, eager=True),
                })
                grown = np.zeros((start + len(new), self.m), dtype=np.uint8)
                grown[:start] = self.dense[:start]
                grown[start:] = other.dense[new["_row"].to_numpy()]
                self.dense, self.index = grown, pl.concat([self.index, new_index])
                # This side's sparse rows of those keys move into their new dense rows.
                self._raise(self._sparse_rows().join(new_index, on=key, how="inner"))
                leaving = pl.col(key).is_in(new_index[key].implode())
                self.sparse = [f.filter(~leaving) for f in self.sparse] if self.sparse else None
        rows = other._sparse_rows()
        if len(rows):
            found = rows.join(self.index, on=key, how="left")
            heavy = found.filter(pl.col("_row").is_not_null())
            if len(heavy):
                self._raise(heavy)
            light = found.filter(pl.col("_row").is_null()).drop("_row")
            self.sparse = merge_sliced(self.sparse, [light], [key])

    def rows(self, keys: pl.Series | None = None) -> pl.DataFrame:
        """Sparse (key, reg, rank) rows, of every key or only of ``keys`` (then without
        merging the pending rows of the others)."""
        if keys is None:
            self.flush()
            sparse, index = self._sparse_rows(), self.index
        else:
            sparse, index = self._of(keys)
        if index.is_empty():
            return sparse
        block = self.dense[index["_row"].to_numpy()]
        r, g = np.nonzero(block)
        dense = pl.DataFrame({
            self.key: index[self.key].to_numpy()[r],
            "reg": g.astype(np.uint16),
            "rank": block[r, g],
        })
        return pl.concat([sparse, dense.cast(sparse.schema)])

    def estimate(self, name: str = "distinct") -> pl.DataFrame:
        """Cardinality per key (see ``estimate``)."""
        self.flush()
        sparse = self._sparse_rows()
        agg = _register_sums(sparse, [self.key])
        if len(self.index):
            block = self.dense[self.index["_row"].to_numpy()]
            nonzero = (block > 0).sum(axis=1)
            weights = 2.0 ** -np.arange(256, dtype=np.float64)
            weights[0] = 0.0  # an empty register counts in the estimator's zeros, not here
            dense = pl.DataFrame({
                self.key: self.index[self.key],
                "_nonzero": nonzero.astype(np.uint32),
                "_sum": weights[block].sum(axis=1),
            })
            agg = pl.concat([agg, dense.cast(agg.schema)])
        return _estimate_from(agg, [self.key], self.p, name)


class RegisterUnion:
    """The union of several ``Registers`` of one key (the two windows of an incremental
    analysis), read without merging them: ``rows`` may repeat a register, with different
    ranks, and a reader takes the max, as sketches merge."""

    def __init__(self, parts: list[Registers]) -> None:
        self.parts = parts

    def is_empty(self) -> bool:
        return all(p.is_empty() for p in self.parts)

    def rows(self, keys: pl.Series | None = None) -> pl.DataFrame:
        return pl.concat([p.rows(keys) for p in self.parts])

    def estimate(self, key: str, p: int, name: str = "distinct") -> pl.DataFrame:
        """Cardinality per key of the union (each register at its highest rank)."""
        merged = self.rows().group_by(key, "reg").agg(pl.col("rank").max())
        return estimate(merged, [key], p, name)


def _register_sums(regs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return regs.group_by(keys).agg(
        pl.len().alias("_nonzero"),
        (2.0 ** (-pl.col("rank").cast(pl.Float64))).sum().alias("_sum"),
    )


def estimate(regs: pl.DataFrame | Registers, keys: list[str], p: int, name: str = "distinct") -> pl.DataFrame:
    """Cardinality per key, as ``hyperloglog.HyperLogLog.card()`` would compute it."""
    if isinstance(regs, Registers):
        return regs.estimate(name)
    return _estimate_from(_register_sums(regs, keys), keys, p, name)


def _estimate_from(agg: pl.DataFrame, keys: list[str], p: int, name: str) -> pl.DataFrame:
    m = 1 << p
    alpha = _hll.get_alpha(p)
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
        est[mid] = raw[mid] - _bias(raw[mid], p)
    return agg.select(keys).with_columns(pl.Series(name, est, dtype=pl.Float64))


def _bias(raw: np.ndarray, p: int) -> np.ndarray:
    """``hyperloglog.hll.estimate_bias`` of many raw estimates at once: the same six nearest
    table entries, the same mean (identical results, tested), without a Python call per key."""
    estimates = np.asarray(_hll.rawEstimateData[p - 4], dtype=np.float64)
    biases = np.asarray(_hll.biasData[p - 4], dtype=np.float64)
    out = np.empty(len(raw))
    block = 4096  # rows × table entries in memory at once
    for lo in range(0, len(raw), block):
        part = raw[lo : lo + block]
        nearest = np.argsort((part[:, None] - estimates[None, :]) ** 2, axis=1)[:, :6]
        out[lo : lo + block] = biases[nearest].sum(axis=1) / nearest.shape[1]
    return out


def to_hll(regs: pl.DataFrame, p: int) -> _hll.HyperLogLog:
    """A ``hyperloglog.HyperLogLog`` holding these registers (one key's rows)."""
    obj = _hll.HyperLogLog(0.2)  # then overwrite precision and registers
    obj.p = p
    obj.m = 1 << p
    obj.alpha = _hll.get_alpha(p)
    obj.M = np.zeros(obj.m, dtype=obj.M.dtype)
    obj.M[regs["reg"].to_numpy().astype(np.int64)] = regs["rank"].to_numpy()
    return obj
