"""The agent table (``features.agent_table``) built in a process of its own, started early.

Why a process: parsing agents is pure Python. In a thread it holds the GIL while the main
thread, folding sessions into client rows, needs it between each of its Polars calls; and
importing the parsers (ua-parser's ~1,300 regexes, the crawler list) costs ~0.3 s of one core.
A process started when a run begins does those imports on the core that sits idle while the
CLI starts up, and parses the agents beside the main thread without sharing its GIL. On the
2M-line bench log that takes ~0.3 s off ``analyze``.

It is an optimisation only: if the platform cannot start the process, or it dies, the table
is built in a thread as before, with the same result (tested). Start it only from a program
whose main module has an ``if __name__ == "__main__"`` guard, as the CLI's entry points do:
a spawned process imports the main module again. The library's functions therefore never
start one themselves; they take one as ``agent_process``.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING

# Light imports only: the CLI starts the process before it imports Polars and the config.
if TYPE_CHECKING:
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
    """``submit(agents, cfg)`` → a callable returning the agent table. Use as a context manager
    so the process is shut down with the run."""

    def __init__(self, *, start: bool = True) -> None:
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

    def submit(self, agents: pl.Series, cfg: Config) -> Callable[[], pl.DataFrame]:
        """Start building the table of ``agents`` (distinct agent strings); the returned
        callable waits for it."""
        future: Future[pl.DataFrame] | None = None
        if self._pool is not None:
            try:
                future = self._pool.submit(_table, agents, cfg)
            except (OSError, RuntimeError):  # BrokenProcessPool is a RuntimeError
                future = None
        if future is None:
            thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botguard-agents")
            local = thread.submit(_table, agents, cfg)
            thread.shutdown(wait=False)
            return local.result

        def result() -> pl.DataFrame:
            assert future is not None
            try:
                return future.result()
            except Exception:  # the process died or could not pickle: build it here
                # A genuine error in the table code raises again, here, with its own traceback.
                return _table(agents, cfg)

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


def for_inputs(total_bytes: int | None) -> AgentProcess:
    """A started process when the input is big enough to repay it, else the thread fallback."""
    return AgentProcess(start=total_bytes is not None and total_bytes >= MIN_INPUT_BYTES)


def for_paths(inputs: Iterable[str]) -> AgentProcess:
    """``for_inputs`` from the command line's inputs, sized with ``os.stat`` alone (files, globs,
    a directory's files): the CLI calls it first thing, so that the process starts before the
    heavy imports. Stdin counts as small."""
    total = 0
    for arg in inputs:
        if arg == "-":
            continue
        paths = [arg] if os.path.exists(arg) else glob.glob(arg)
        for path in paths:
            if os.path.isdir(path):
                paths.extend(os.path.join(path, n) for n in os.listdir(path))
            elif os.path.isfile(path):
                total += os.path.getsize(path)
    return for_inputs(total)
