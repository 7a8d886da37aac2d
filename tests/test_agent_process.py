"""The agent table built in a process of its own equals the one built in a thread, and a
process that cannot start or dies mid-run falls back to the thread without losing anything."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from botguard import agent_process
from botguard.agent_process import AgentProcess
from botguard.config import load_config
from botguard.features import build_features
from botguard.ingest import read_hits
from botguard.ranges import load_ranges

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shop" / "access.log"


@pytest.fixture(scope="module")
def hits() -> pl.DataFrame:
    cfg = load_config()
    frame, _ = read_hits([str(FIXTURE)], cfg, format="combined")
    # A few agents that take ua-parser's pure Python path (non-ASCII, control characters).
    odd = frame.head(3).with_columns(
        pl.Series("user_agent", ["Mozilla/5.0 (Ünïcode) Gecko", "curl/8.0\x01", "Opera/9.80 ☃"])
    )
    return pl.concat([frame, odd])


def _features(hits: pl.DataFrame, proc: AgentProcess | None):  # type: ignore[no-untyped-def]
    cfg = load_config()
    ranges = load_ranges(cfg, Path("/nonexistent-botguard-ranges"))
    return build_features([hits], cfg, ranges=ranges, keep_sessions=False, agent_process=proc)


def test_process_and_thread_give_the_same_tables(hits: pl.DataFrame) -> None:
    in_thread = _features(hits, None)
    with AgentProcess() as proc:
        assert proc.running
        in_process = _features(hits, proc)
        assert proc.fallbacks == 0, proc.last_failure  # built in the process, not here
    assert len(in_thread.agents) > 10
    assert_frame_equal(in_thread.agents.sort("user_agent"), in_process.agents.sort("user_agent"))
    assert_frame_equal(in_thread.clients, in_process.clients)


def test_a_process_that_cannot_start_falls_back(hits: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(method: str) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(agent_process.multiprocessing, "get_context", refuse)
    with AgentProcess() as proc:
        assert not proc.running
        got = _features(hits, proc)
    assert_frame_equal(_features(hits, None).clients, got.clients)


def test_a_process_that_dies_falls_back(hits: pl.DataFrame) -> None:
    with AgentProcess() as proc:
        pool = proc._pool
        assert pool is not None
        pool.submit(os.getpid).result()  # the worker is up
        for pid in list(pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        got = _features(hits, proc)
        assert proc.fallbacks == 1 and proc.last_failure
    assert_frame_equal(_features(hits, None).clients, got.clients)


def test_an_error_kills_the_process_at_once() -> None:
    with pytest.raises(KeyError), AgentProcess() as proc:
        pool = proc._pool
        assert pool is not None
        workers = list(pool._processes.values())  # type: ignore[attr-defined]
        raise KeyError("the run failed")
    for worker in workers:
        # The pool's own thread reaps the worker too: poll until one of the two has the status.
        deadline = time.monotonic() + 10
        while worker.exitcode is None and time.monotonic() < deadline:
            worker.join(timeout=0.1)
        assert worker.exitcode is not None and worker.exitcode < 0  # terminated, not finished


def test_small_inputs_do_not_start_a_process() -> None:
    assert not agent_process.for_inputs(1000).running
    assert not agent_process.for_inputs(None).running  # stdin: size unknown
    with agent_process.for_inputs(agent_process.MIN_INPUT_BYTES) as big:
        assert big.running


def test_inputs_are_sized_as_the_run_will_read_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_process, "MIN_INPUT_BYTES", 250)
    (tmp_path / "a.log").write_bytes(b"x" * 100)
    (tmp_path / "b.log").write_bytes(b"x" * 100)
    (tmp_path / "rot").mkdir()
    (tmp_path / "rot" / "c.log.1").write_bytes(b"x" * 100)
    (tmp_path / "rot" / "archive").mkdir()  # a directory's subdirectories are not read
    (tmp_path / "rot" / "archive" / "old.log").write_bytes(b"x" * 1000)
    assert not agent_process.for_paths([str(tmp_path / "a.log"), "-"]).running
    assert not agent_process.for_paths([str(tmp_path / "rot")]).running
    with agent_process.for_paths([str(tmp_path / "*.log"), str(tmp_path / "rot")]) as proc:
        assert proc.running
    # Inputs that do not exist are the run's to report: no process, no error here.
    assert not agent_process.for_paths([str(tmp_path / "missing.log")]).running


def _count_starts(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    starts: list[bool] = []
    real = AgentProcess.__init__

    def spy(self: AgentProcess, *, start: bool = True) -> None:
        starts.append(start)
        real(self, start=start)

    monkeypatch.setattr(AgentProcess, "__init__", spy)
    monkeypatch.setattr(agent_process, "MIN_INPUT_BYTES", 0)
    return starts


def test_library_functions_never_start_a_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A spawned process re-imports the caller's main module: an unguarded user script would
    run twice. Only callers that pass one get a process."""
    from botguard.pipeline import analyze, compute_features

    starts = _count_starts(monkeypatch)
    cfg = load_config()
    ranges = load_ranges(cfg, Path("/nonexistent-botguard-ranges"))
    compute_features([str(FIXTURE)], cfg, format="combined", ranges=ranges)
    analyze([str(FIXTURE)], cfg, out_dir=tmp_path, format="combined", ranges=ranges, force=True)
    assert starts and not any(starts)


def test_the_cli_starts_one_for_big_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from botguard.cli.app import app

    monkeypatch.setenv("BOTGUARD_DATA", str(tmp_path / "data"))
    starts = _count_starts(monkeypatch)
    result = CliRunner().invoke(app, ["analyze", str(FIXTURE), "--format", "combined", "--out", str(tmp_path / "o"), "--quiet", "--force"])
    assert result.exit_code == 0, result.output
    assert starts == [True]
