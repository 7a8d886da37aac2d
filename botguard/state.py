"""Decisions that outlive one run: a small SQLite store shared by cron runs.

Each run ``record``s what it blocked; ``active(as_of)`` is what should be blocked now: recorded
blocks whose TTL has not run out, plus manual blocks, minus anything an allow entry covers.
A block lasts ``state.ttl`` and grows for repeat offenders (``ttl * repeat_factor **
(offences - 1)``, capped at ``state.max_ttl``), so a scraper that comes back every day stays
out longer each time while a one-off false positive ages out quickly.

Time is always the caller's ``as_of`` (data time): replaying last week's logs ages entries by
last week's clock. The only wall-clock value is the lock holder's start time, which describes
a process, not the data.

Safety: one writer at a time (``fcntl.flock`` on ``PATH.lock``; a second run waits, then
fails with :class:`StateLockedError`), each ``record`` is one SQLite transaction in WAL mode
with ``synchronous=FULL``, so a run killed mid-write leaves the previous state intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import polars as pl

from botguard.errors import BotguardError
from botguard.schema import BLOCK_ENTRIES_SCHEMA, conform
from botguard.sinks.fmt_base import comment_text, iso_utc
from botguard.sinks.fmt_networks import (
    ParsedNetwork,
    as_entries,
    canonical,
    covered,
    exclude,
    normalize,
    parse_network,
)

SCHEMA_VERSION = 1
DEFAULT_LOCK_TIMEOUT_S = 60.0
MAX_NOTE_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    entry         TEXT PRIMARY KEY,   -- canonical address or CIDR
    first_seen_us INTEGER,
    last_seen_us  INTEGER,
    requests      INTEGER NOT NULL DEFAULT 0,
    clients       INTEGER,
    score         REAL,
    reasons       TEXT NOT NULL DEFAULT '[]',  -- JSON array of the latest run's reasons
    offences      INTEGER NOT NULL,   -- distinct runs (as_of values) that blocked it
    last_run_us   INTEGER NOT NULL,   -- as_of of the latest run that blocked it
    expires_us    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires_us);
CREATE TABLE IF NOT EXISTS carry (    -- features carried between incremental runs
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS manual (
    kind       TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    entry      TEXT NOT NULL,
    added_us   INTEGER NOT NULL,
    expires_us INTEGER,               -- NULL: until removed
    note       TEXT,
    PRIMARY KEY (kind, entry)
);
"""

# One statement per entry; every right-hand side sees the *old* row, so "new run" is spelled
# out where needed. An offence is counted when a client comes back after its block expired:
# a scraper seen by every 5-minute cron run while blocked keeps its block fresh at the same
# TTL instead of doubling it six times in half an hour. Re-recording the same run (same or earlier as_of) leaves the counters
# (offences, requests) alone, so a retried cron job does not make anyone a repeat offender.
_UPSERT = """
INSERT INTO decisions (entry, first_seen_us, last_seen_us, requests, clients, score, reasons,
                       offences, last_run_us, expires_us)
VALUES (:entry, :first_seen_us, :last_seen_us, :requests, :clients, :score, :reasons,
        1, :run_us, :run_us + bg_ttl_us(1))
ON CONFLICT (entry) DO UPDATE SET
    first_seen_us = min(coalesce(first_seen_us, excluded.first_seen_us),
                        coalesce(excluded.first_seen_us, first_seen_us)),
    last_seen_us = max(coalesce(last_seen_us, excluded.last_seen_us),
                       coalesce(excluded.last_seen_us, last_seen_us)),
    requests = requests + iif(excluded.last_run_us > last_run_us, excluded.requests, 0),
    clients = iif(excluded.last_run_us > last_run_us, excluded.clients,
                  max(coalesce(clients, excluded.clients), coalesce(excluded.clients, clients))),
    score = iif(excluded.last_run_us > last_run_us, excluded.score,
                max(coalesce(score, excluded.score), coalesce(excluded.score, score))),
    reasons = iif(excluded.last_run_us > last_run_us, excluded.reasons, reasons),
    offences = offences + iif(excluded.last_run_us > last_run_us
                              AND excluded.last_run_us >= expires_us, 1, 0),
    last_run_us = max(last_run_us, excluded.last_run_us),
    expires_us = max(expires_us, excluded.last_run_us
                     + bg_ttl_us(offences + iif(excluded.last_run_us > last_run_us
                                                AND excluded.last_run_us >= expires_us, 1, 0)))
"""


class StateLockedError(BotguardError):
    """Another run holds the state lock for longer than this run is willing to wait."""


class TTLConfig(Protocol):
    """What the store needs from ``botguard.config.models.StateConfig`` (seconds)."""

    @property
    def ttl(self) -> float: ...

    @property
    def max_ttl(self) -> float: ...

    @property
    def repeat_factor(self) -> float: ...


@dataclass(frozen=True)
class RecordSummary:
    """What one :meth:`StateStore.record` did, for the run report."""

    recorded: int
    new: int
    invalid: int


def block_ttl_s(cfg: TTLConfig, offences: int) -> float:
    """``ttl * repeat_factor ** (offences - 1)``, capped at ``max_ttl``."""
    exponent = max(offences, 1) - 1
    try:
        ttl = float(cfg.ttl) * float(cfg.repeat_factor) ** exponent
    except OverflowError:
        ttl = float("inf")
    return min(ttl, float(cfg.max_ttl))


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch, UTC (naive datetimes are taken as UTC, like Polars)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _US


def _from_us(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


# --------------------------------------------------------------------------- locking
def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _acquire_lock(path: Path, timeout_s: float, poll_s: float) -> int:
    """Take an exclusive ``flock`` on ``PATH.lock``, waiting up to ``timeout_s``.

    flock is released by the kernel when the holder dies, so a killed run never leaves a
    stale lock behind; the file's content only says who holds it, for the error message.
    """
    lock = _lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise StateLockedError(
                    f"another botguard run holds the lock on {path} since {holder}; "
                    f"gave up after waiting {timeout_s:g} s",
                    hint="let it finish (or stop it), then run again; the lock frees itself "
                    "when that process exits",
                ) from None
            time.sleep(poll_s)
        except BaseException:
            os.close(fd)
            raise
    # Wall clock on purpose: this describes a process for an operator, not data time.
    started = iso_utc(datetime.now(UTC).replace(microsecond=0))
    info = f"{started} (pid {os.getpid()} on {socket.gethostname()})\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return fd


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return comment_text(text, 160)
    return "an unknown time (no holder recorded)"


# --------------------------------------------------------------------------- store
class StateStore:
    """The SQLite state file at ``path``; use as a context manager, one per run.

    Opening takes the run lock (waiting up to ``lock_timeout_s``). ``readonly=True`` takes no
    lock and only reads (WAL gives it a consistent snapshot while a run writes), for
    ``state list``-style commands that should not queue behind cron.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        readonly: bool = False,
        poll_s: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock_fd: int | None = None
        self._ttl_cfg: TTLConfig | None = None
        self._depth = 0  # open transaction() blocks
        #: The carry as stored (``load_carry``, ``save_carry``); None: not known, rewritten whole.
        self._carried: dict[str, bytes] | None = None
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no botguard state at {self.path}")
            uri = self.path.absolute().as_uri() + "?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire_lock(self.path, lock_timeout_s, poll_s)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=lock_timeout_s)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.create_function("bg_ttl_us", 1, self._ttl_us, deterministic=True)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            from botguard.errors import InputError

            raise InputError(
                f"{self.path}: not a usable botguard state database ({exc})",
                hint="a damaged or foreign file: move it aside and a new state starts (blocks in it are lost)",
            ) from None
        except BaseException:
            self.close()
            raise

    # -- lifecycle
    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            self._conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction around everything done inside (nested ones join it): a run's blocks
        and carried state are committed together, with one sync of the file instead of one
        each."""
        if self.readonly:
            raise PermissionError(f"state at {self.path} was opened read-only")
        if self._depth:
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._carried = None
            raise
        finally:
            self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            self._carried = None
            raise

    def _migrate(self) -> None:
        with self.transaction() as conn:
            # Statement by statement: executescript() would commit the open transaction.
            for statement in _DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise BotguardError(
                    f"state at {self.path} has schema version {row[0]}, newer than this "
                    f"botguard understands ({SCHEMA_VERSION})",
                    hint="upgrade botguard, or point state at a new file",
                )

    def _ttl_us(self, offences: int) -> int:
        assert self._ttl_cfg is not None, "bg_ttl_us used outside record()"
        return int(block_ttl_s(self._ttl_cfg, int(offences)) * 1_000_000)

    # -- carried features (analyze --incremental)
    def load_carry(self) -> dict[str, bytes]:
        self._carried = {name: bytes(data) for name, data in self._conn.execute("SELECT name, data FROM carry")}
        return dict(self._carried)

    def save_carry(self, blobs: dict[str, bytes]) -> None:
        """Replace the carried state (one transaction: a killed run leaves the previous one).

        Only the blobs that differ from those ``load_carry`` read are written: the previous
        window's, about two-fifths of the state, stay as they are between two rolls, and
        rewriting them cost a cron run 0.1 s. The run lock keeps the file as it was
        read until then."""
        carried = self._carried
        with self.transaction() as conn:
            if carried is None:
                conn.execute("DELETE FROM carry")
                carried = {}
            conn.executemany("DELETE FROM carry WHERE name = ?", [(n,) for n in carried if n not in blobs])
            conn.executemany("INSERT OR REPLACE INTO carry (name, data) VALUES (?, ?)", [
                (n, b) for n, b in blobs.items() if (old := carried.get(n)) is None or (old is not b and old != b)
            ])
        self._carried = dict(blobs)  # a rollback of an enclosing transaction forgets it again

    # -- recorded decisions
    def record(self, entries: pl.DataFrame, as_of: datetime, cfg: TTLConfig) -> RecordSummary:
        """Record this run's block entries (block-entries schema; ``action == "block"`` rows).

        An optional ``requests`` column adds to the entry's hit count. Invalid entries are
        skipped and counted. The whole record is one transaction.
        """
        run_us = to_us(as_of)
        normalized = normalize(entries)
        rows = normalized.frame.filter(pl.col("action") == "block")
        requests = _requests_by_entry(entries)
        frame = rows.join(requests, on="entry", how="left", maintain_order="left").select(
            "entry",
            pl.col("first_seen").dt.epoch("us").alias("first_seen_us"),
            pl.col("last_seen").dt.epoch("us").alias("last_seen_us"),
            pl.col("requests").fill_null(0),
            "clients",
            "score",
            _json_list("reasons").alias("reasons"),
            pl.lit(run_us, dtype=pl.Int64).alias("run_us"),
        )
        self._ttl_cfg = cfg
        try:
            with self.transaction() as conn:
                before = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
                conn.executemany(_UPSERT, frame.iter_rows(named=True))
                after = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
        finally:
            self._ttl_cfg = None
        return RecordSummary(frame.height, after - before, normalized.invalid_rows)

    def active(self, as_of: datetime, allow: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
        """What to block at ``as_of``: unexpired recorded and manual blocks, minus allows (the
        manual ones and ``allow``: the config's allowlist, which a run applies to what
        earlier runs recorded too).

        Block-entries schema, one row per network, numeric order. Values read back from the
        file are validated again (a state file is just another input).
        """
        now = to_us(as_of)
        recorded = self._frame(
            "SELECT entry, score, reasons, clients, first_seen_us, last_seen_us, expires_us "
            "FROM decisions WHERE expires_us > ?",
            (now,),
        )
        manual = self._frame(
            "SELECT entry, 1.0 AS score, "
            "json_array('manual block' || coalesce(': ' || note, '')) AS reasons, "
            "0 AS clients, added_us AS first_seen_us, added_us AS last_seen_us, expires_us "
            "FROM manual WHERE kind = 'block' AND (expires_us IS NULL OR expires_us > ?)",
            (now,),
        )
        blocks = pl.concat([recorded, manual]).with_columns(action=pl.lit("block"))
        allows = [parse_network(e) for e in [*self._manual_entries("allow", now), *allow]]
        work = normalize(conform(blocks, BLOCK_ENTRIES_SCHEMA)).frame
        return as_entries(exclude(work, allows))

    def _frame(self, sql: str, params: tuple[Any, ...]) -> pl.DataFrame:
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        schema = {
            "entry": pl.String(),
            "score": pl.Float64(),
            "reasons": pl.String(),
            "clients": pl.Int64(),
            "first_seen_us": pl.Int64(),
            "last_seen_us": pl.Int64(),
            "expires_us": pl.Int64(),
        }
        raw = pl.DataFrame(rows, schema=[(n, schema[n]) for n in names], orient="row")
        return raw.select(
            "entry",
            "score",
            pl.col("reasons").str.json_decode(pl.List(pl.String)),
            "clients",
            _from_us("first_seen_us").alias("first_seen"),
            _from_us("last_seen_us").alias("last_seen"),
            _from_us("expires_us").alias("expires"),
        )

    def prune(self, before: datetime) -> int:
        """Forget recorded decisions that expired before ``before`` (their offence history too).

        Keep history long enough for repeat offenders to be recognized (e.g. ``max_ttl``).
        """
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM decisions WHERE expires_us < ?", (to_us(before),))
            return cur.rowcount

    def latest_run(self) -> datetime | None:
        """The data time of the latest run that recorded a block: what "now" was for it."""
        (us,) = self._conn.execute("SELECT max(last_run_us) FROM decisions").fetchone()
        return None if us is None else _EPOCH + timedelta(microseconds=int(us))

    def forget_within(self, networks: list[str] | tuple[str, ...]) -> int:
        """Forget recorded blocks that lie inside ``networks`` (allowlisted since): allow beats
        block for every later export too, not only for the run that saw the allowlist."""
        if not networks:
            return 0
        entries = [e for (e,) in self._conn.execute("SELECT entry FROM decisions")]
        work = normalize(conform(pl.DataFrame({"entry": entries}, schema={"entry": pl.String}), BLOCK_ENTRIES_SCHEMA)).frame
        gone = work.filter(covered(work, [parse_network(n) for n in networks]))["entry"].to_list()
        if gone:
            with self.transaction() as conn:
                conn.executemany("DELETE FROM decisions WHERE entry = ?", [(e,) for e in gone])
        return len(gone)

    def decisions(self) -> pl.DataFrame:
        """Every recorded decision, expired or not, with offences and request counts."""
        cursor = self._conn.execute(
            "SELECT entry, offences, requests, score, clients, first_seen_us, last_seen_us, "
            "last_run_us, expires_us FROM decisions ORDER BY entry"
        )
        rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
        frame = pl.DataFrame(rows, schema=names, orient="row")
        return frame.select(
            "entry",
            pl.col("offences").cast(pl.Int64),
            pl.col("requests").cast(pl.Int64),
            pl.col("score").cast(pl.Float64),
            pl.col("clients").cast(pl.Int64),
            *(
                _from_us(c).alias(c.removesuffix("_us"))
                for c in ("first_seen_us", "last_seen_us", "last_run_us", "expires_us")
            ),
        )

    # -- manual entries
    def allow_add(self, cidr: str, ttl_s: float | None, note: str | None, as_of: datetime) -> str:
        """Allow ``cidr`` (wins over every block it covers); returns the canonical entry."""
        return self._manual_add("allow", cidr, ttl_s, note, as_of)

    def block_add(self, cidr: str, ttl_s: float | None, note: str | None, as_of: datetime) -> str:
        """Block ``cidr`` by hand (``ttl_s=None``: until removed); returns the canonical entry."""
        return self._manual_add("block", cidr, ttl_s, note, as_of)

    def allow_remove(self, cidr: str) -> bool:
        """Remove a manual allow entry; False when there was none."""
        entry = parse_network(cidr).text
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM manual WHERE kind = 'allow' AND entry = ?", (entry,))
            return cur.rowcount > 0

    def block_remove(self, cidr: str) -> bool:
        """Unblock ``cidr``: remove the manual block and any recorded decision for it.

        The recorded history goes too, so if it is detected again it starts as a first
        offence. Use an allow entry to stop it being blocked again.
        """
        entry = parse_network(cidr).text
        with self.transaction() as conn:
            removed = conn.execute(
                "DELETE FROM manual WHERE kind = 'block' AND entry = ?", (entry,)
            ).rowcount
            removed += conn.execute("DELETE FROM decisions WHERE entry = ?", (entry,)).rowcount
        return removed > 0

    def allow_list(self, as_of: datetime | None = None) -> pl.DataFrame:
        """Manual allow entries (only those in force at ``as_of`` if given)."""
        return self._manual_list("allow", as_of)

    def block_list(self, as_of: datetime | None = None) -> pl.DataFrame:
        """Manual block entries (only those in force at ``as_of`` if given)."""
        return self._manual_list("block", as_of)

    def _manual_add(
        self,
        kind: Literal["allow", "block"],
        cidr: str,
        ttl_s: float | None,
        note: str | None,
        as_of: datetime,
    ) -> str:
        parsed: ParsedNetwork = parse_network(cidr)
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl_s!r}")
        added = to_us(as_of)
        expires = None if ttl_s is None else added + int(ttl_s * 1_000_000)
        clean_note = comment_text(note, MAX_NOTE_CHARS) if note else None
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO manual (kind, entry, added_us, expires_us, note) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, entry) DO UPDATE SET "
                "added_us = excluded.added_us, expires_us = excluded.expires_us, "
                "note = excluded.note",
                (kind, parsed.text, added, expires, clean_note),
            )
        return parsed.text

    def _manual_entries(self, kind: str, now_us: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT entry FROM manual WHERE kind = ? AND (expires_us IS NULL OR expires_us > ?)",
            (kind, now_us),
        ).fetchall()
        return [r[0] for r in rows]

    def _manual_list(self, kind: str, as_of: datetime | None) -> pl.DataFrame:
        sql = "SELECT entry, added_us, expires_us, note FROM manual WHERE kind = ?"
        params: tuple[Any, ...] = (kind,)
        if as_of is not None:
            sql += " AND (expires_us IS NULL OR expires_us > ?)"
            params = (kind, to_us(as_of))
        rows = self._conn.execute(sql, params).fetchall()
        frame = pl.DataFrame(
            rows,
            schema={
                "entry": pl.String(),
                "added_us": pl.Int64(),
                "expires_us": pl.Int64(),
                "note": pl.String(),
            },
            orient="row",
        )
        ordered = normalize(frame.select("entry")).frame.select("entry")
        return ordered.join(frame, on="entry", how="left", maintain_order="left").select(
            "entry",
            _from_us("added_us").alias("added"),
            _from_us("expires_us").alias("expires"),
            "note",
        )


def _json_list(column: str) -> pl.Expr:
    """A list column as a JSON array string (vectorized; null becomes [])."""
    encoded = pl.struct(pl.col(column).alias("r")).struct.json_encode()
    # '{"r":[...]}' -> '[...]'
    inner = encoded.str.slice(5, encoded.str.len_bytes() - 6)
    return pl.when(pl.col(column).is_null()).then(pl.lit("[]")).otherwise(inner)


def _requests_by_entry(entries: pl.DataFrame) -> pl.DataFrame:
    """Sum an optional ``requests`` column per canonical entry (the schema has none)."""
    if "requests" not in entries.columns:
        return pl.DataFrame(schema={"entry": pl.String(), "requests": pl.Int64()})
    return (
        entries.select(
            canonical(entries["entry"]).alias("entry"), pl.col("requests").cast(pl.Int64)
        )
        .drop_nulls("entry")
        .group_by("entry")
        .agg(pl.col("requests").sum())
    )


__all__ = [
    "RecordSummary",
    "StateLockedError",
    "StateStore",
    "block_ttl_s",
]
