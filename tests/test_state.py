"""State store: TTLs, repeat offenders, allow beats block, manual entries, locking, crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from botguard.config import load_config
from botguard.config.models import StateConfig
from botguard.schema import BLOCK_ENTRIES_SCHEMA, check
from botguard.sinks.export import diff_entries, read_plain, write_export
from botguard.state import StateLockedError, StateStore, block_ttl_s

T0 = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg() -> StateConfig:
    """The shipped defaults: ttl 24h, max_ttl 30d, repeat_factor 2."""
    state = load_config().state
    assert (state.ttl, state.max_ttl, state.repeat_factor) == (86400, 30 * 86400, 2)
    return state


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    with StateStore(tmp_path / "state.db", lock_timeout_s=1) as s:
        yield s  # type: ignore[misc]


def blocks(*values: str, score: float = 0.9, at: datetime = T0) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "entry": list(values),
            "action": ["block"] * n,
            "score": [score] * n,
            "reasons": [["rate_high"]] * n,
            "clients": [1] * n,
            "first_seen": [at] * n,
            "last_seen": [at] * n,
            "expires": [None] * n,
        },
        schema=BLOCK_ENTRIES_SCHEMA,
    )


def active(store: StateStore, at: datetime) -> list[str]:
    return store.active(at)["entry"].to_list()


# --------------------------------------------------------------------------- TTL
def test_block_expires_after_ttl(store: StateStore, cfg: StateConfig) -> None:
    store.record(blocks("203.0.113.7", "2001:db8::1"), T0, cfg)
    assert active(store, T0 + 23 * HOUR) == ["203.0.113.7", "2001:db8::1"]
    assert active(store, T0 + DAY - timedelta(microseconds=1)) == ["203.0.113.7", "2001:db8::1"]
    assert active(store, T0 + DAY) == []
    frame = store.active(T0)
    assert check(frame, BLOCK_ENTRIES_SCHEMA) == []
    assert frame["expires"].to_list() == [T0 + DAY, T0 + DAY]


def test_repeat_offenders_stay_longer_up_to_the_cap(store: StateStore, cfg: StateConfig) -> None:
    run = T0
    expected_ttl = [1, 2, 4, 8, 16, 30, 30]  # days: 24h * 2^(n-1), capped at 30d
    for ttl_days in expected_ttl:
        store.record(blocks("198.51.100.9"), run, cfg)
        row = store.decisions().row(0, named=True)
        assert row["expires"] == run + ttl_days * DAY
        run = row["expires"] + HOUR  # comes back an hour after the block ran out
    assert store.decisions()["offences"].item() == len(expected_ttl)


def test_ttl_formula() -> None:
    cfg = StateConfig(ttl=3600, max_ttl=10 * 3600, repeat_factor=3)
    assert [block_ttl_s(cfg, n) for n in (1, 2, 3, 4)] == [3600, 3 * 3600, 9 * 3600, 10 * 3600]
    assert block_ttl_s(cfg, 10_000) == 10 * 3600  # no overflow


def test_rerecording_the_same_run_is_idempotent(store: StateStore, cfg: StateConfig) -> None:
    frame = blocks("203.0.113.7").with_columns(requests=pl.lit(40))
    store.record(frame, T0, cfg)
    store.record(frame, T0, cfg)  # a retried cron job
    row = store.decisions().row(0, named=True)
    assert (row["offences"], row["requests"], row["expires"]) == (1, 40, T0 + DAY)
    store.record(frame, T0 + HOUR, cfg)  # the next run, still blocked: refreshed, same TTL
    row = store.decisions().row(0, named=True)
    assert (row["offences"], row["requests"], row["expires"]) == (1, 80, T0 + HOUR + DAY)
    store.record(frame, T0 + 3 * DAY, cfg)  # back after the block expired: a repeat offence
    row = store.decisions().row(0, named=True)
    assert (row["offences"], row["requests"], row["expires"]) == (2, 120, T0 + 3 * DAY + 2 * DAY)


def test_expiry_never_shrinks(store: StateStore, cfg: StateConfig) -> None:
    store.record(blocks("203.0.113.7"), T0 + DAY, cfg)
    store.record(blocks("203.0.113.7"), T0, cfg)  # replaying older data afterwards
    row = store.decisions().row(0, named=True)
    assert row["expires"] == T0 + 2 * DAY
    assert row["first_seen"] == T0


def test_record_drops_hostile_entries(store: StateStore, cfg: StateConfig) -> None:
    summary = store.record(
        blocks("203.0.113.7", "1.2.3.4; }", "evil\ninclude x", "10.0.0.1/8"), T0, cfg
    )
    assert (summary.recorded, summary.new, summary.invalid) == (1, 1, 3)
    assert active(store, T0) == ["203.0.113.7"]


def test_tampered_state_is_validated_on_read(tmp_path: Path, cfg: StateConfig) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as s:
        s.record(blocks("203.0.113.7"), T0, cfg)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO decisions (entry, offences, last_run_us, expires_us) VALUES (?, 1, 0, ?)",
            ("1.2.3.4; } include /etc/passwd", 2**62),
        )
    conn.close()
    with StateStore(path) as s:
        assert active(s, T0) == ["203.0.113.7"]


# --------------------------------------------------------------------------- allow / block
def test_allow_address_and_network_win(store: StateStore, cfg: StateConfig) -> None:
    store.record(
        blocks("203.0.113.7", "203.0.113.8", "198.51.100.0/24", "192.0.2.0/24", "2001:db8::5"),
        T0,
        cfg,
    )
    store.allow_add("203.0.113.7", None, "our monitoring", T0)
    store.allow_add("198.51.100.0/23", None, None, T0)  # covers the blocked /24
    store.allow_add("2001:db8::/32", None, None, T0)
    store.allow_add("192.0.2.128/25", None, None, T0)  # inside a blocked /24: split it
    assert active(store, T0) == ["192.0.2.0/25", "203.0.113.8"]


def test_allow_with_ttl_expires(store: StateStore, cfg: StateConfig) -> None:
    store.record(blocks("203.0.113.7"), T0, cfg)
    store.allow_add("203.0.113.0/24", 2 * 3600, "vendor crawl window", T0)
    assert active(store, T0 + HOUR) == []
    assert active(store, T0 + 3 * HOUR) == ["203.0.113.7"]
    assert store.allow_list(T0 + 3 * HOUR).is_empty()
    listed = store.allow_list()
    assert listed.row(0, named=True) == {
        "entry": "203.0.113.0/24",
        "added": T0,
        "expires": T0 + 2 * HOUR,
        "note": "vendor crawl window",
    }
    assert store.allow_remove("203.0.113.0/24") is True
    assert store.allow_remove("203.0.113.0/24") is False


def test_manual_blocks(store: StateStore, cfg: StateConfig) -> None:
    assert store.block_add("2001:DB8::/48", None, "abusive /48", T0) == "2001:db8::/48"
    store.block_add("198.51.100.7", 3600, None, T0)
    store.record(blocks("198.51.100.7", score=0.6), T0, cfg)
    frame = store.active(T0)
    assert frame["entry"].to_list() == ["198.51.100.7", "2001:db8::/48"]
    manual = frame.row(1, named=True)
    assert (manual["score"], manual["reasons"], manual["expires"]) == (
        1.0,
        ["manual block: abusive /48"],
        None,
    )
    merged = frame.row(0, named=True)  # recorded and manual on the same address
    assert merged["score"] == 1.0
    assert merged["reasons"] == ["manual block", "rate_high"]
    assert active(store, T0 + 2 * HOUR) == ["198.51.100.7", "2001:db8::/48"]  # recorded 24h
    assert store.block_list()["entry"].to_list() == ["198.51.100.7", "2001:db8::/48"]
    assert store.block_remove("198.51.100.7") is True  # manual and recorded both gone
    assert active(store, T0) == ["2001:db8::/48"]
    assert store.block_remove("198.51.100.7") is False


def test_allow_beats_manual_block(store: StateStore) -> None:
    store.block_add("10.0.0.0/8", None, None, T0)
    store.allow_add("10.0.0.0/9", None, None, T0)
    assert active(store, T0) == ["10.128.0.0/9"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", r"did you mean 10\.0\.0\.0/8"),
        ("example.com", r"expected an IP address or CIDR"),
        ("1.2.3.4; }", r"expected an IP address or CIDR"),
        ("fe80::1%eth0", r"zone ids"),
        ("0.0.0.0/0", r"block every address"),
    ],
)
def test_manual_entries_are_validated(store: StateStore, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.allow_add(value, None, None, T0)
    with pytest.raises(ValueError, match=message):
        store.block_add(value, None, None, T0)


def test_bad_ttl_and_note(store: StateStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.allow_add("192.0.2.1", -5, None, T0)
    store.allow_add("192.0.2.1", None, "line1\nline2; } " + "x" * 500, T0)
    note = store.allow_list()["note"].item()
    assert "\n" not in note and ";" not in note and len(note) <= 200


# --------------------------------------------------------------------------- diff
def test_diff_between_runs(store: StateStore, cfg: StateConfig, tmp_path: Path) -> None:
    store.record(blocks("203.0.113.7", "198.51.100.9"), T0, cfg)
    before = store.active(T0)
    previous = tmp_path / "blocklist.txt"
    write_export(before, "plain", previous, generated_at=T0)
    store.record(blocks("2001:db8::1"), T0 + 20 * HOUR, cfg)
    store.allow_add("198.51.100.9", None, None, T0 + 20 * HOUR)
    added, removed = diff_entries(read_plain(previous), store.active(T0 + 21 * HOUR))
    assert added["entry"].to_list() == ["2001:db8::1"]
    assert removed["entry"].to_list() == ["198.51.100.9"]


# --------------------------------------------------------------------------- locking
def test_second_opener_times_out_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path):
        started = time.monotonic()
        with pytest.raises(StateLockedError) as err:
            StateStore(path, lock_timeout_s=0.3, poll_s=0.05)
        assert time.monotonic() - started >= 0.3
    message = str(err.value)
    assert message.startswith(f"another botguard run holds the lock on {path} since ")
    assert f"(pid {os.getpid()} on " in message
    assert err.value.hint
    with StateStore(path, lock_timeout_s=0.3):  # released on close
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from botguard.state import StateStore
    with StateStore(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@contextlib.contextmanager
def spawned(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run a helper script; yield once it printed its first line; always reap it."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            if not proc.stdout.readline():
                proc.wait(30)
                raise AssertionError(f"helper failed: {proc.stderr.read()}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


def kill_now(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_second_run_waits_for_the_first(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with spawned(HOLDER, str(path), "0.8"):
        with pytest.raises(StateLockedError, match="holds the lock"):
            StateStore(path, lock_timeout_s=0.2, poll_s=0.05)
        started = time.monotonic()
        with StateStore(path, lock_timeout_s=30, poll_s=0.05):
            waited = time.monotonic() - started
        assert 0.1 < waited < 30


def test_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with spawned(HOLDER, str(path), "600") as holder:
        kill_now(holder)
    with StateStore(path, lock_timeout_s=5):
        pass


def test_readonly_does_not_wait_for_the_lock(tmp_path: Path, cfg: StateConfig) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as writer:
        writer.record(blocks("203.0.113.7"), T0, cfg)
        with StateStore(path, readonly=True) as reader:
            assert active(reader, T0) == ["203.0.113.7"]
            with pytest.raises(PermissionError, match="read-only"):
                reader.allow_add("192.0.2.1", None, None, T0)


# --------------------------------------------------------------------------- crash safety
# The writer pauses (and announces it) in the middle of the transaction, after many rows
# went into SQLite, so the kill lands mid-write every time, not by luck.
KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timezone
    import polars as pl
    from botguard.config import load_config
    from botguard.state import StateStore

    path, n = sys.argv[1], int(sys.argv[2])
    original = pl.DataFrame.iter_rows

    def slow_rows(self, *args, **kwargs):
        for i, row in enumerate(original(self, *args, **kwargs)):
            if i == n // 2:
                print("midway", flush=True)
                time.sleep(600)
            yield row

    pl.DataFrame.iter_rows = slow_rows
    at = datetime(2024, 5, 2, tzinfo=timezone.utc)
    frame = pl.DataFrame({
        "entry": [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)],
        "action": ["block"] * n, "score": [0.9] * n, "reasons": [["bulk"]] * n,
        "clients": [1] * n,
    })
    with StateStore(path) as store:
        print("opened", flush=True)
        store.record(frame, at, load_config().state)
    """
)


def test_killed_writer_leaves_previous_state_intact(tmp_path: Path, cfg: StateConfig) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as s:
        s.record(blocks("203.0.113.7", "2001:db8::1"), T0, cfg)
        s.allow_add("192.0.2.0/24", None, "office", T0)
        before = s.active(T0)
    with spawned(KILLED_WRITER, str(path), "200000") as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "midway"
        wal = path.with_name(path.name + "-wal")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and wal.stat().st_size < 1_000_000:
            time.sleep(0.05)  # uncommitted pages reached the WAL file: truly mid-write
        kill_now(writer)
    with StateStore(path, lock_timeout_s=5) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert s.active(T0).equals(before)
        assert s.decisions().height == 2
        s.record(blocks("198.51.100.1"), T0 + HOUR, cfg)  # and it is still writable
        assert "198.51.100.1" in active(s, T0 + HOUR)


ATOMIC_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import datetime, timezone
    import polars as pl
    from botguard import atomic
    from botguard.sinks.export import write_export

    target, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print("started", flush=True)
    if mode == "pause":
        real_fsync = os.fsync
        def paused_fsync(fd):
            print("midway", flush=True)
            time.sleep(600)
        atomic.os.fsync = paused_fsync
    frame = pl.DataFrame({
        "entry": [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)],
        "action": ["block"] * n, "score": [0.9] * n, "clients": [1] * n,
    })
    at = datetime(2024, 5, 2, tzinfo=timezone.utc)
    while True:
        write_export(frame, "plain", target, generated_at=at)
        if mode == "pause":
            break
    """
)


def test_killed_export_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "blocklist.txt"
    old = write_export(blocks("203.0.113.7"), "plain", target, generated_at=T0).data
    with spawned(ATOMIC_WRITER, str(target), "300000", "pause") as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "midway"  # temp file written, not renamed
        kill_now(writer)
    assert target.read_bytes() == old
    assert read_plain(target)["entry"].to_list() == ["203.0.113.7"]


def test_export_killed_at_random_moments_is_old_or_new(tmp_path: Path) -> None:
    target = tmp_path / "blocklist.txt"
    old = write_export(blocks("203.0.113.7"), "plain", target, generated_at=T0).data
    complete = {old}
    for delay in (0.05, 0.2, 0.4, 0.7, 1.1):
        with spawned(ATOMIC_WRITER, str(target), "60000", "loop") as writer:
            time.sleep(delay)
            kill_now(writer)
        data = target.read_bytes()
        if data not in complete:
            # The first complete new version; every later one must be identical to it.
            assert data.endswith(b"\n") and b"# entries: 60000\n" in data
            assert read_plain(target).height == 60000
            complete.add(data)
    assert len(complete) <= 2


def test_block_add_refuses_a_huge_network_without_force(tmp_path: Path) -> None:
    """A typo such as 0.0.0.0/1 would reach every firewall the exports feed."""
    from typer.testing import CliRunner

    from botguard.cli.app import app

    runner = CliRunner()
    db = str(tmp_path / "s.db")
    for wide in ("0.0.0.0/1", "::/1", "10.0.0.0/8"):
        res = runner.invoke(app, ["block", "add", wide, "--state", db])
        assert res.exit_code == 2 and "--force" in res.output, res.output
    assert runner.invoke(app, ["block", "add", "198.51.0.0/16", "--state", db]).exit_code == 0
    assert runner.invoke(app, ["block", "add", "10.0.0.0/8", "--state", db, "--force"]).exit_code == 0
    listed = runner.invoke(app, ["block", "list", "--state", db]).output
    assert "198.51.0.0/16" in listed and "10.0.0.0/8" in listed and "0.0.0.0/1" not in listed


@pytest.mark.parametrize("content", [b"not a database at all\n" * 50, b"SQLite format 3\x00" + b"\x00" * 40])
def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    """Cron must get a message naming the file, never a traceback."""
    from typer.testing import CliRunner

    from botguard.cli.app import app

    db = tmp_path / "state.db"
    db.write_bytes(content)
    res = CliRunner().invoke(app, ["block", "list", "--state", str(db)])
    assert res.exit_code == 2 and "not a usable botguard state database" in res.output and str(db) in res.output
    assert "Traceback" not in res.output


def _stored_carry(path: Path) -> dict[str, bytes]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {n: bytes(d) for n, d in conn.execute("SELECT name, data FROM carry")}


def test_saving_the_carry_writes_what_changed_and_leaves_exactly_the_new_state(tmp_path: Path) -> None:
    """Blobs equal to those read stay in place (the previous window's, between two rolls);
    the file then holds exactly the saved state, whether or not it was read first, and a
    rolled-back run leaves the earlier one."""
    path = tmp_path / "state.db"
    first = {"meta": b"1", "prev.a": b"A" * 1000, "cur.b": b"B", "gone": b"G"}
    with StateStore(path, lock_timeout_s=1) as s:
        s.save_carry(first)
    assert _stored_carry(path) == first
    second = {"meta": b"2", "prev.a": b"A" * 1000, "cur.b": b"b", "new": b"N"}
    with StateStore(path, lock_timeout_s=1) as s:
        loaded = s.load_carry()
        assert loaded == first
        written: list[str] = []
        s._conn.set_trace_callback(written.append)
        s.save_carry({**second, "prev.a": loaded["prev.a"]})
        s._conn.set_trace_callback(None)
    assert _stored_carry(path) == second
    inserts = [w for w in written if w.startswith("INSERT")]
    assert len(inserts) == 3  # meta, cur.b, new: the unchanged prev.a is not written again
    # Saved without reading first: nothing of the earlier state survives.
    with StateStore(path, lock_timeout_s=1) as s:
        s.save_carry({"meta": b"3"})
    assert _stored_carry(path) == {"meta": b"3"}
    # A run that fails after saving leaves the previous state, and the store knows it did not
    # write: its next save writes everything.
    with StateStore(path, lock_timeout_s=1) as s:
        s.load_carry()
        with pytest.raises(RuntimeError), s.transaction():
            s.save_carry({"meta": b"4", "x": b"X"})
            raise RuntimeError("killed")
        assert _stored_carry(path) == {"meta": b"3"}
        s.save_carry({"meta": b"3", "x": b"X"})
    assert _stored_carry(path) == {"meta": b"3", "x": b"X"}
