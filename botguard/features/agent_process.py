"""The agent table (``features.agent_table``) built in a process of its own, started early.

Why a process: parsing agents is pure Python. In a thread it holds the GIL while the main
thread, folding sessions into client rows, needs it between each of its Polars calls; and
importing the parsers (ua-parser's ~1,300 regexes, the crawler list) costs ~0.3 s of one core.
A process started when a run begins does those imports on the core that sits idle while the
CLI starts up, and parses the agents beside the main thread without sharing its GIL. On the
2M-line bench log that takes ~0.3 s off ``analyze``.

It is an optimisation only: if the platform cannot start the process, or it dies, the table
is built in a thread as before, with the same result (tested).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from types import TracebackType

import polars as pl

from botguard.config.models import Config

#: Below this much input the run is short and the agents few: a process is not worth its
#: start-up (~0.5 s of CPU for Python and the imports).
MIN_INPUT_BYTES = 64 << 20


def _warm() -> None:
    """Imports and ua-parser's matchers, done while the parent starts up and reads."""
    from botguard.features import agent, crawlers  # noqa: F401

    agent._matchers()


def _table(agents: pl.Series, cfg: Config) -> pl.DataFrame:
    from botguard.features import agent_table

    return agent_table(agents, cfg)


class AgentProcess:
    """``submit(agents)`` → a callable returning the agent table. Use as a context manager so
    the process is shut down with the run."""

    def __init__(self, cfg: Config, *, start: bool = True) -> None:
        self.cfg = cfg
        self._pool: ProcessPoolExecutor | None = None
        if start:
            try:
                # spawn, not fork: forking a process that runs Polars' thread pool can deadlock.
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
                self._pool.submit(_warm)  # starts the process now
            except (OSError, RuntimeError):
                self._pool = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def submit(self, agents: pl.Series) -> Callable[[], pl.DataFrame]:
        """Start building the table of ``agents`` (distinct agent strings); the returned
        callable waits for it."""
        future: Future[pl.DataFrame] | None = None
        if self._pool is not None:
            try:
                future = self._pool.submit(_table, agents, self.cfg)
            except (OSError, RuntimeError):  # BrokenProcessPool is a RuntimeError
                future = None
        if future is None:
            thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botguard-agents")
            local = thread.submit(_table, agents, self.cfg)
            thread.shutdown(wait=False)
            return local.result

        def result() -> pl.DataFrame:
            assert future is not None
            try:
                return future.result()
            except Exception:  # the process died or could not pickle: build it here
                # A genuine error in the table code raises again, here, with its own traceback.
                return _table(agents, self.cfg)

        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def for_inputs(cfg: Config, total_bytes: int | None) -> AgentProcess:
    """A started process when the input is big enough to repay it, else the thread fallback."""
    return AgentProcess(cfg, start=total_bytes is not None and total_bytes >= MIN_INPUT_BYTES)
