"""analyze --incremental: each run reads only new lines, continues the carried features, and
ends where one pass over the same lines would (across appends, rotations and restarts)."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from botguard.cli.app import app
from botguard.config import Config, load_config
from botguard.pipeline import analyze

SHOP = Path(__file__).resolve().parents[1] / "fixtures" / "shop" / "access.log"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def shop() -> bytes:
    return SHOP.read_bytes()


def _once(logs: list[Path], cfg: Config, out: Path) -> pl.DataFrame:
    analyze([str(p) for p in logs], cfg, out_dir=out)
    return _features(out)


def _features(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "features.parquet").sort("client")


def _inc(logs: list[Path | str], cfg: Config, tmp: Path, name: str) -> dict[str, Any]:
    res = analyze([str(p) for p in logs], cfg, out_dir=tmp / name, state_path=tmp / "state.db", incremental=True)
    return res.summary


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert_frame_equal(a, b, check_exact=False)


def _cuts(data: bytes, *shares: float) -> list[bytes]:
    """``data`` cut at these shares of its length: mid-line, on purpose."""
    at = [0, *(int(len(data) * s) for s in shares), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(at)]


def test_appended_lines_are_read_once_and_end_as_one_pass(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    log = tmp_path / "access.log"
    parts = _cuts(shop, 0.31, 0.77)
    assert not parts[0].endswith(b"\n")  # the first run sees a line being written
    new_lines = []
    for i, part in enumerate(parts):
        with log.open("ab") as fh:
            fh.write(part)
        new_lines.append(_inc([log], cfg, tmp_path, f"run{i}")["incremental"]["new_lines"])
    # The half-written line waited for its end: every line was read exactly once.
    assert sum(new_lines) == shop.count(b"\n")
    assert all(n > 0 for n in new_lines)
    _same(_features(tmp_path / "run2"), _once([SHOP], cfg, tmp_path / "once"))
    decisions = pl.read_parquet(tmp_path / "run2" / "decisions.parquet").sort("client")
    once = pl.read_parquet(tmp_path / "once" / "decisions.parquet").sort("client")
    assert decisions["action"].to_list() == once["action"].to_list()
    # Nothing new: nothing read, the same judgement.
    again = _inc([log], cfg, tmp_path, "run3")
    assert again["incremental"]["new_lines"] == 0
    _same(_features(tmp_path / "run3"), _features(tmp_path / "run2"))


def test_unterminated_last_line_waits_until_the_log_is_rotated(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    """A live log's unterminated last line may still be being written: it is read once the
    log has been rotated (then it is as complete as it will get), and never counted twice."""
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    log.write_bytes(shop.rstrip(b"\n"))
    assert _inc([log, rotated], cfg, tmp_path, "a")["incremental"]["new_lines"] == shop.count(b"\n") - 1
    assert _inc([log, rotated], cfg, tmp_path, "b")["incremental"]["new_lines"] == 0
    log.rename(rotated)
    log.write_bytes(b"")
    assert _inc([log, rotated], cfg, tmp_path, "c")["incremental"]["new_lines"] == 1
    _same(_features(tmp_path / "c"), _once([SHOP], cfg, tmp_path / "once"))


def test_rotation_by_rename_and_compression(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    parts = _cuts(shop, 0.4, 0.7)
    head = [p[: p.rfind(b"\n") + 1] for p in parts]  # logrotate rotates whole lines
    rest = [p[p.rfind(b"\n") + 1:] for p in parts]
    parts = [head[0], rest[0] + head[1], rest[1] + parts[2]]
    d = tmp_path / "logs"
    d.mkdir()
    live, one = d / "access.log", d / "access.log.1"
    live.write_bytes(parts[0])
    _inc([live], cfg, tmp_path, "r0")
    live.rename(one)  # logrotate (create): the live file moves, a new one starts
    live.write_bytes(parts[1])
    s1 = _inc([live, one], cfg, tmp_path, "r1")
    assert s1["incremental"]["new_lines"] == parts[1].count(b"\n")
    with one.open("rb") as src, gzip.open(d / "access.log.2.gz", "wb") as dst:  # delaycompress
        shutil.copyfileobj(src, dst)
    one.unlink()
    live.rename(one)
    live.write_bytes(parts[2])
    s2 = _inc([str(d / "access.log*")], cfg, tmp_path, "r2")
    assert s2["incremental"]["new_lines"] == parts[2].count(b"\n")
    status = {Path(x["path"]).name: (x["status"], x["lines_read"]) for x in s2["incremental"]["logs"]}
    assert status == {
        "access.log.2.gz": ("read before: nothing new", 0),
        "access.log.1": ("read before: nothing new", 0),
        "access.log": ("new: read from its start", parts[2].count(b"\n")),
    }
    _same(_features(tmp_path / "r2"), _once([SHOP], cfg, tmp_path / "once"))


def test_copytruncate_rotation(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    lines = shop.splitlines(keepends=True)
    a, b, c = b"".join(lines[:2000]), b"".join(lines[2000:2600]), b"".join(lines[2600:])
    live, one = tmp_path / "access.log", tmp_path / "access.log.1"
    live.write_bytes(a)
    _inc([live], cfg, tmp_path, "c0")
    with live.open("ab") as fh:  # written after the run, before logrotate copies
        fh.write(b)
    shutil.copyfile(live, one)
    live.write_bytes(c)  # truncated, then the server writes on
    s = _inc([live, one], cfg, tmp_path, "c1")
    assert s["incremental"]["new_lines"] == len(lines) - 2000
    _same(_features(tmp_path / "c1"), _once([SHOP], cfg, tmp_path / "once"))


def _line(ip: str, ts: datetime, path: str) -> str:
    stamp = ts.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"\n'


def test_evidence_ages_out_by_window(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("state:\n  window: 1h\n")
    cfg = load_config(cfg_file)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    log = tmp_path / "access.log"
    log.write_text("")
    steady, early = "198.51.100.7", "203.0.113.9"
    seen = []
    for hour in range(5):
        lines = [_line(steady, t0 + timedelta(hours=hour, minutes=m), f"/p/{hour * 60 + m}") for m in range(0, 60, 5)]
        if hour == 0:
            lines += [_line(early, t0 + timedelta(minutes=m), "/") for m in range(10)]
        with log.open("a") as fh:
            fh.write("".join(lines))
        summary = _inc([log], cfg, tmp_path, f"h{hour}")
        feats = _features(tmp_path / f"h{hour}")
        seen.append((summary["incremental"]["window_closed"], set(feats["client"]),
                     feats.filter(pl.col("client") == steady)["requests"].item()))
    # Every run judges one to two windows (12 to 24 requests of the steady client, one hour
    # of held-back lines aside); a client seen only in the first hour is forgotten once two
    # windows have closed after it.
    assert all(12 <= n <= 24 for _, _, n in seen[1:]), seen
    assert early in seen[0][1] and early in seen[1][1]
    assert early not in seen[-1][1]
    assert any(closed for closed, _, _ in seen)


def test_changed_settings_read_the_logs_again(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(shop)
    _inc([log], cfg, tmp_path, "a")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("session:\n  gap: 10m\n")
    other = load_config(cfg_file)
    res = analyze([str(log)], other, out_dir=tmp_path / "b", state_path=tmp_path / "state.db", incremental=True)
    assert any("changed since" in w for w in res.warnings)
    assert res.summary["incremental"]["new_lines"] == shop.count(b"\n")
    _same(_features(tmp_path / "b"), _once([log], other, tmp_path / "once"))
    # Rules and policy do not shape the carried features: changing them keeps the carry.
    cfg_file.write_text("session:\n  gap: 10m\npolicy:\n  ai_crawlers: block\n")
    res = analyze([str(log)], load_config(cfg_file), out_dir=tmp_path / "c", state_path=tmp_path / "state.db", incremental=True)
    assert res.summary["incremental"]["new_lines"] == 0
    assert not any("changed since" in w for w in res.warnings)


def test_incremental_needs_a_state_and_named_files(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["analyze", str(SHOP), "--incremental", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "--incremental needs --state" in r.output
    r = runner.invoke(app, ["analyze", "-", "--incremental", "--state", str(tmp_path / "s.db"), "--out", str(tmp_path / "o")],
                      input=SHOP.read_text())
    assert r.exit_code != 0
    assert "standard input cannot be read incrementally" in r.output


def test_cli_reports_the_incremental_run(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(SHOP.read_bytes())
    args = ["analyze", str(log), "--incremental", "--state", str(tmp_path / "s.db"), "--out", str(tmp_path / "o"), "--json"]
    runner = CliRunner()
    first = json.loads(runner.invoke(app, args).output)
    second = json.loads(runner.invoke(app, args).output)
    assert first["incremental"]["new_lines"] == SHOP.read_bytes().count(b"\n")
    assert second["incremental"]["new_lines"] == 0
    assert second["actions"] == first["actions"]
    assert second["data_from"] == first["data_from"]


def test_previous_window_is_merged_into_the_judgement(tmp_path: Path, shop: bytes) -> None:
    """After a window closes, a run judges the closed window and the new one together: counts
    and distinct counts (sketches merged register by register) are those of one pass; only a
    session open across the boundary counts in both windows."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("state:\n  window: 1h\n")
    cfg = load_config(cfg_file)
    log = tmp_path / "access.log"
    closed = []
    for i, part in enumerate(_cuts(shop, 0.4, 0.8)):
        with log.open("ab") as fh:
            fh.write(part)
        closed.append(_inc([log], cfg, tmp_path, f"w{i}")["incremental"]["window_closed"])
    assert closed == [False, True, False]
    got, once = _features(tmp_path / "w2"), _once([SHOP], cfg, tmp_path / "once")
    assert got["client"].to_list() == once["client"].to_list()
    exact = ["requests", "pages", "product_pages", "assets", "bytes_sent", "distinct_products", "distinct_paths",
             "distinct_agents", "first_seen", "last_seen", "peak_pages_per_min", "status_4xx", "catalogue_coverage"]
    _same(got.select(exact), once.select(exact))
    extra = (got["sessions"] - once["sessions"]).to_list()
    assert set(extra) <= {0, 1} and sum(extra) > 0


def test_untouched_clients_keep_their_rows_and_end_as_the_whole_way(
    tmp_path: Path, shop: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run recomputes only the clients it saw and keeps the others' rows from the previous
    run: with two windows, after many small appends (each touching a few clients), every
    output is exactly what the whole way (both windows merged, every client folded) gives
    over the same state."""
    import sqlite3

    from botguard.features.carry import Carry

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("state:\n  window: 1h\n")
    cfg = load_config(cfg_file)
    log = tmp_path / "access.log"
    lines = shop.splitlines(keepends=True)
    cut = int(len(lines) * 0.8)
    log.write_bytes(b"".join(lines[:cut]))
    assert _inc([log], cfg, tmp_path, "prime")["incremental"]["window_closed"]
    kept_runs = []
    original = Carry._judge_touched

    def spy(self: Carry, n_sessions: int) -> Any:
        judged = original(self, n_sessions)
        kept_runs.append(judged is not None and len(judged.rows) > len(pl.concat(self.touched).unique()))
        return judged

    monkeypatch.setattr(Carry, "_judge_touched", spy)
    parsed: list[tuple[int, int]] = []  # (agents kept from the previous run, agents parsed)
    split = Carry.split_agents

    def spy_agents(self: Carry, seen: pl.Series) -> Any:
        known, new = split(self, seen)
        parsed.append((0 if known is None else len(known), len(new)))
        return known, new

    monkeypatch.setattr(Carry, "split_agents", spy_agents)
    rest = lines[cut:]
    steps = [rest[: len(rest) // 3], rest[len(rest) // 3: -40], rest[-40:]]
    for i, step in enumerate(steps):
        if i == len(steps) - 1:
            shutil.copy(tmp_path / "state.db", tmp_path / "whole.db")
        with log.open("ab") as fh:
            fh.write(b"".join(step))
        _inc([log], cfg, tmp_path, f"r{i}")
    assert kept_runs and all(kept_runs)  # rows were kept for clients not touched
    assert all(known > new for known, new in parsed)  # most agents were parsed before
    # The same last run, from the same state without the kept rows: the whole way.
    with sqlite3.connect(tmp_path / "whole.db") as con:
        con.execute("DELETE FROM carry WHERE name LIKE 'res.%'")
    analyze([str(log)], cfg, out_dir=tmp_path / "whole", state_path=tmp_path / "whole.db", incremental=True)
    assert len(kept_runs) == len(steps)  # the whole way did not go through the kept rows
    assert parsed[-1][0] == 0  # and parsed every agent again
    last = tmp_path / f"r{len(steps) - 1}"
    for name in ("features.parquet", "decisions.parquet", "samples.parquet"):
        assert_frame_equal(pl.read_parquet(last / name), pl.read_parquet(tmp_path / "whole" / name))
    assert json.loads((last / "summary.json").read_text())["sessions"] == json.loads(
        (tmp_path / "whole" / "summary.json").read_text())["sessions"]


def test_damaged_carry_is_set_aside_with_a_warning(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    import sqlite3

    log = tmp_path / "access.log"
    log.write_bytes(shop)
    _inc([log], cfg, tmp_path, "a")
    with sqlite3.connect(tmp_path / "state.db") as con:
        con.execute("UPDATE carry SET data = ? WHERE name = 'cur.client_sums'", (b"not arrow",))
    res = analyze([str(log)], cfg, out_dir=tmp_path / "b", state_path=tmp_path / "state.db", incremental=True)
    assert any("could not be read" in w and "read again from their start" in w for w in res.warnings)
    assert res.summary["incremental"]["new_lines"] == shop.count(b"\n")
    _same(_features(tmp_path / "b"), _features(tmp_path / "a"))


@pytest.mark.parametrize("incremental", [True, False])
def test_allowlisting_unblocks_what_earlier_runs_recorded(tmp_path: Path, cfg: Config, incremental: bool) -> None:
    """A false positive fixed in the config (policy.allowlist.networks) leaves the blocklist,
    the exports and the state at the next run, not when its block expires."""
    from botguard.pipeline import export_entries

    state = tmp_path / "state.db"
    first = analyze([str(SHOP)], cfg, out_dir=tmp_path / "a", state_path=state, incremental=incremental, force=True)
    blocked = first.decisions.filter((pl.col("action") == "block") & ~pl.col("client").str.contains("/"))["ip"][0]
    assert blocked in (tmp_path / "a" / "blocklist.txt").read_text()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"policy:\n  allowlist:\n    networks: [{blocked}/32]\n")
    second = analyze([str(SHOP)], load_config(cfg_file), out_dir=tmp_path / "b", state_path=state,
                     incremental=incremental, exports=[("nginx-deny", tmp_path / "deny.conf")], force=True)
    assert second.decisions.filter(pl.col("ip") == blocked)["action"].to_list() == ["allow"]
    assert f"{blocked}\n" not in (tmp_path / "b" / "blocklist.txt").read_text()
    assert f"deny {blocked};" not in (tmp_path / "deny.conf").read_text()
    export_entries("plain", tmp_path / "later.txt", from_dir=None, state_path=state, max_entries=None, diff=None,
                   changes_only=False, as_of=datetime.fromisoformat(second.summary["data_to"]))
    later = (tmp_path / "later.txt").read_text()
    assert blocked not in later.split() and len(later.split("\n")) > 10


def test_a_log_caught_half_way_through_rotation_is_read_once(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    """logrotate's copytruncate still copying, or compress still writing the .gz beside the
    plain file: both hold the same lines past the cursor; they are read from one of them."""
    lines = shop.splitlines(keepends=True)
    a, b, c = b"".join(lines[:2000]), b"".join(lines[2000:3000]), b"".join(lines[3000:])
    live, one, gz = tmp_path / "access.log", tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    live.write_bytes(a)
    _inc([str(tmp_path / "access.log*")], cfg, tmp_path, "h0")
    with live.open("ab") as fh:
        fh.write(b)
    one.write_bytes((a + b)[: len(a + b) * 9 // 10])  # the copy, 90% done
    s1 = _inc([live, one], cfg, tmp_path, "h1")
    assert s1["incremental"]["new_lines"] == 1000
    assert any("same lines" in p for p in s1["parse"]["problems"])
    one.write_bytes(a + b)  # copy done, live truncated, the server writes on
    live.write_bytes(c[: len(c) // 2 + c[len(c) // 2:].index(b"\n") + 1])
    rest = c[len(live.read_bytes()):]
    packed = gzip.compress(a + b)
    gz.write_bytes(packed[: len(packed) * 8 // 10])  # compress writing the .gz beside .1
    s2 = _inc([str(tmp_path / "access.log*")], cfg, tmp_path, "h2")
    assert s2["incremental"]["new_lines"] == live.read_bytes().count(b"\n")
    gz.write_bytes(packed)
    one.unlink()
    with live.open("ab") as fh:
        fh.write(rest)
    s3 = _inc([str(tmp_path / "access.log*")], cfg, tmp_path, "h3")
    assert s3["incremental"]["new_lines"] == rest.count(b"\n")
    _same(_features(tmp_path / "h3"), _once([SHOP], cfg, tmp_path / "once"))


def test_missing_and_rotated_away_logs_are_reported_not_fatal(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    lines = shop.splitlines(keepends=True)
    live, one = tmp_path / "access.log", tmp_path / "access.log.1"
    live.write_bytes(b"".join(lines[:1000]))
    s0 = _inc([live, one], cfg, tmp_path, "m0")  # no access.log.1 yet: skipped, like missingok
    assert s0["incremental"]["new_lines"] == 1000
    assert any("access.log.1: not found" in p for p in s0["parse"]["problems"])
    # Two rotations between runs: the log read last time is now access.log.2, not named.
    with live.open("ab") as fh:
        fh.write(b"".join(lines[1000:1500]))
    live.rename(tmp_path / "access.log.2")
    one.write_bytes(b"".join(lines[1500:2000]))
    live.write_bytes(b"".join(lines[2000:2500]))
    res = analyze([str(live), str(one)], cfg, out_dir=tmp_path / "m1", state_path=tmp_path / "state.db", incremental=True)
    assert res.summary["incremental"]["new_lines"] == 1000
    assert any(f"{live} as the previous run read it (to line 1,000)" in w for w in res.alerts)
    assert set(res.alerts) <= set(res.warnings)
    # A quiet cron run says it all the same, on stderr.
    live.rename(tmp_path / "access.log.3")
    live.write_bytes(b"")
    r = CliRunner().invoke(app, ["analyze", str(live), str(one), "--incremental", "--state", str(tmp_path / "state.db"),
                                 "--out", str(tmp_path / "m3"), "--quiet", "--force"])
    assert "as the previous run read it" in r.output, r.output
    assert r.exit_code == 0, r.output
    with pytest.raises(Exception, match="no such file"):
        analyze([str(tmp_path / "nope.log")], cfg, out_dir=tmp_path / "m2", state_path=tmp_path / "state.db", incremental=True)


def test_a_compressed_log_read_to_its_end_is_not_inflated_again(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    import lzma

    old = tmp_path / "access.log.2.xz"
    old.write_bytes(lzma.compress(shop))
    _inc([old], cfg, tmp_path, "x0")
    data = bytearray(old.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # damage past its first KiB
    old.write_bytes(bytes(data))
    res = analyze([str(old)], cfg, out_dir=tmp_path / "x1", state_path=tmp_path / "state.db", incremental=True)
    assert res.summary["incremental"]["new_lines"] == 0
    assert not any("corrupt" in w for w in res.warnings)


def test_a_few_odd_lines_neither_refuse_the_run_nor_change_the_format(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    """A quiet five minutes with a few odd lines is held to max_error_ratio together with the
    carried traffic (a refusal would stop every later run too), in the format sniffed before;
    a run of its own lines, all bad (the format changed), is still refused at once."""
    lines = shop.splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines[:-10]))
    analyze([str(log)], cfg, out_dir=tmp_path / "o0", state_path=tmp_path / "state.db", incremental=True)
    with log.open("ab") as fh:
        fh.write(b'66.249.66.1 - - [02/Mar/2026:02:00:00 +0000] "GET /p/1\n' * 3 + b"".join(lines[-10:]))
    res = analyze([str(log)], cfg, out_dir=tmp_path / "o1", state_path=tmp_path / "state.db", incremental=True)
    assert res.summary["parse"]["format"] == "combined"
    assert (res.summary["parse"]["parsed"], res.summary["parse"]["rejected"]) == (10, 3)
    with log.open("ab") as fh:
        fh.write(b"this is not an access log line\n" * 300)
    from botguard.errors import RefusedError

    with pytest.raises(RefusedError):
        analyze([str(log)], cfg, out_dir=tmp_path / "o2", state_path=tmp_path / "state.db", incremental=True)


def test_a_line_from_the_future_does_not_move_the_clock(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    log = tmp_path / "access.log"
    future = (datetime.now(UTC) + timedelta(days=400)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    log.write_bytes(shop + f'203.0.113.50 - - [{future}] "GET / HTTP/1.1" 200 100 "-" "Mozilla/5.0"\n'.encode())
    res = analyze([str(log)], cfg, out_dir=tmp_path / "f0", state_path=tmp_path / "state.db", incremental=True, force=True)
    assert res.summary["data_to"].startswith("2026-03-02")
    assert not res.summary["incremental"]["window_closed"]
    assert any("after this machine's clock" in w for w in res.warnings)
    assert "203.0.113.50" in _features(tmp_path / "f0")["client"].to_list()  # analysed all the same


def test_a_catch_up_read_ends_with_the_last_two_windows(tmp_path: Path, shop: bytes) -> None:
    """The first run over a two-hour log with 30-minute windows judges its last two windows
    only, as if it had run every few minutes all along."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("state:\n  window: 30m\n")
    cfg = load_config(cfg_file)
    log = tmp_path / "access.log"
    log.write_bytes(shop)
    summary = _inc([log], cfg, tmp_path, "c0")
    assert summary["incremental"]["window_closed"]
    judged_from = datetime.fromisoformat(summary["incremental"]["judged_from"])
    feats = _features(tmp_path / "c0")
    assert judged_from == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    assert feats["first_seen"].min() >= judged_from - timedelta(minutes=30)  # sessions open across it aside
    assert feats["requests"].sum() < shop.count(b"\n") * 0.7


def test_a_resumed_w3c_log_keeps_its_columns(tmp_path: Path, cfg: Config) -> None:
    """IIS writes #Fields once at the top: a run resuming mid-file reads with the columns the
    previous run had in force, not the default ones."""
    log = tmp_path / "u_ex.log"
    header = "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time cs-method cs-uri-stem " \
             "cs-uri-query c-ip cs-version cs(User-Agent) cs-host sc-status sc-bytes time-taken\n"
    row = "2023-10-10 14:00:{:02d} GET /p/{} - 198.51.100.4 HTTP/1.1 python-requests/2.31.0 shop.example 200 120 250\n"
    log.write_text(header + "".join(row.format(i, i) for i in range(3)))
    args = dict(out_dir=tmp_path / "w", state_path=tmp_path / "state.db", incremental=True, format="w3c", force=True)
    analyze([str(log)], cfg, **args)  # type: ignore[arg-type]
    with log.open("a") as fh:
        fh.write("".join(row.format(i, i) for i in range(3, 6)))
    res = analyze([str(log)], cfg, **args)  # type: ignore[arg-type]
    assert (res.summary["parse"]["parsed"], res.summary["parse"]["rejected"]) == (3, 0)


def test_every_log_given_keeps_its_cursor_however_many(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    """Seventy daily rotations and the live log under one glob: a second run reads nothing."""
    lines = shop.splitlines(keepends=True)
    d = tmp_path / "logs"
    d.mkdir()
    per = len(lines) // 71
    for day in range(70):
        (d / f"access.log-202601{day + 1:02d}.gz").write_bytes(gzip.compress(b"".join(lines[day * per:(day + 1) * per])))
    (d / "access.log").write_bytes(b"".join(lines[70 * per:]))
    first = _inc([str(d / "access.log*")], cfg, tmp_path, "g0")
    assert first["incremental"]["new_lines"] == len(lines)
    assert _inc([str(d / "access.log*")], cfg, tmp_path, "g1")["incremental"]["new_lines"] == 0


def test_allowlisting_an_ipv6_client_by_agent_removes_its_network(tmp_path: Path, cfg: Config) -> None:
    """An IPv6 client is its /64: allowlisting it by agent removes the recorded /64 block, not
    one address out of it (which left the rest of the network blocked, in 64 fragments)."""
    state = tmp_path / "state.db"
    first = analyze([str(SHOP)], cfg, out_dir=tmp_path / "a", state_path=state, force=True)
    v6 = first.decisions.filter((pl.col("action") == "block") & pl.col("client").str.contains("::/64"))
    client, agent = v6["client"][0], v6["user_agent"][0]
    assert client in (tmp_path / "a" / "blocklist.txt").read_text()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"policy:\n  allowlist:\n    agents: [{json.dumps('^' + re.escape(agent) + '$')}]\n")
    analyze([str(SHOP)], load_config(cfg_file), out_dir=tmp_path / "b", state_path=state, force=True)
    text = (tmp_path / "b" / "blocklist.txt").read_text()
    assert client.split("::")[0] not in text
    from botguard.state import StateStore

    with StateStore(state) as store:
        assert client not in store.decisions()["entry"].to_list()


def test_logs_read_one_after_the_other_fill_the_windows_of_their_time(tmp_path: Path, shop: bytes) -> None:
    """Two virtual hosts' logs over the same hours, read one after the other: the second
    log's lines go to the window of their time (or none, when older than the two judged), as
    the same lines fed run by run would."""
    from botguard.ingest import read_hits

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("state:\n  window: 30m\n")
    cfg = load_config(cfg_file)
    lines = shop.splitlines(keepends=True)
    a, b = tmp_path / "shop.log", tmp_path / "blog.log"
    a.write_bytes(b"".join(x for i, x in enumerate(lines) if x.split(b" ")[0][-1] % 2))
    b.write_bytes(b"".join(x for i, x in enumerate(lines) if not x.split(b" ")[0][-1] % 2))
    res = analyze([str(a), str(b)], cfg, out_dir=tmp_path / "v", state_path=tmp_path / "state.db", incremental=True)
    judged_from = datetime.fromisoformat(res.summary["incremental"]["judged_from"])
    hits, _ = read_hits([str(SHOP)], cfg)
    assert _features(tmp_path / "v")["requests"].sum() == hits.filter(pl.col("ts") >= judged_from).height
    assert any("older than the two windows judged" in w for w in res.warnings)


def test_a_log_replaced_by_one_that_begins_alike_is_read_from_its_start(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    lines = shop.splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines[:3000]))
    _inc([log], cfg, tmp_path, "r0")
    log.write_bytes(b"".join(lines[:10] + lines[3500:]))  # the same first lines, then others
    res = analyze([str(log)], cfg, out_dir=tmp_path / "r1", state_path=tmp_path / "state.db", incremental=True)
    assert res.summary["incremental"]["new_lines"] == 10 + len(lines) - 3500
    assert any("begins like a log read before" in w for w in res.warnings)


def test_two_logs_that_share_a_first_line_are_both_read(tmp_path: Path, cfg: Config) -> None:
    check = '10.0.0.9 - - [02/Mar/2026:00:00:00 +0000] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29"\n'
    row = '203.0.113.{} - - [02/Mar/2026:00:0{}:00 +0000] "GET /p/{} HTTP/1.1" 200 512 "-" "Mozilla/5.0"\n'
    shop_log, blog_log = tmp_path / "shop.log", tmp_path / "blog.log"
    shop_log.write_text(check)
    blog_log.write_text(check)
    _inc([shop_log, blog_log], cfg, tmp_path, "t0")
    shop_log.write_text(check + "".join(row.format(1, i, i) for i in range(5)))
    blog_log.write_text(check + "".join(row.format(2, i, i) for i in range(3)))
    assert _inc([shop_log, blog_log], cfg, tmp_path, "t1")["incremental"]["new_lines"] == 8


def test_explain_names_the_log_that_holds_the_line_after_rotation(tmp_path: Path, cfg: Config, shop: bytes) -> None:
    lines = shop.splitlines(keepends=True)
    live, one = tmp_path / "access.log", tmp_path / "access.log.1"
    live.write_bytes(b"".join(lines[:3000]))
    _inc([live, one], cfg, tmp_path, "e0")
    live.rename(one)
    live.write_bytes(b"".join(lines[3000:]))
    _inc([live, one], cfg, tmp_path, "e1")
    samples = pl.read_parquet(tmp_path / "e1" / "samples.parquet")
    assert set(samples["source"]) == {str(live), str(one)}
    for source, line_no, path in samples.select("source", "line_no", "path").iter_rows():
        text = Path(source).read_bytes().splitlines()[line_no - 1]
        assert f" {path}".encode() in text or f" {path}?".encode() in text


def test_a_run_that_fails_while_saving_keeps_neither_its_blocks_nor_its_state(
    tmp_path: Path, cfg: Config, shop: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks and the carried state that produced them commit together: a run that dies in
    between leaves the state as it was, and the next run reads the same lines again."""
    from botguard.state import StateStore

    log = tmp_path / "access.log"
    log.write_bytes(shop)

    def dies(self: StateStore, blobs: dict[str, bytes]) -> None:
        raise OSError("disk full")

    def run(name: str) -> dict[str, Any]:  # forced past the blast-radius cap: the shop is half bots
        return analyze([str(log)], cfg, out_dir=tmp_path / name, state_path=tmp_path / "state.db",
                       incremental=True, force=True).summary

    with monkeypatch.context() as m:
        m.setattr(StateStore, "save_carry", dies)
        with pytest.raises(OSError, match="disk full"):
            run("killed")
    with StateStore(tmp_path / "state.db") as store:
        assert store.decisions().is_empty() and store.load_carry() == {}
    again = run("again")
    assert again["incremental"]["new_lines"] == shop.count(b"\n")
    with StateStore(tmp_path / "state.db") as store:
        assert len(store.decisions()) == again["blocklist"]["entries"] > 0 and store.load_carry()
