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

import logging
import multiprocessing
import os
from collections.abc import Callable
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
    """Imports and ua-parser's matchers, done while the parent starts up and reads. Its
    matchers compile their regexes lazily, on first use: here every one is compiled ahead
    (~0.2 s of this process's idle time), not while the parent waits for a table of a few
    hundred agents (which had cost it ~0.1 s of waiting in a cron run)."""
    from botguard.features import agent, crawlers  # noqa: F401

    matchers, _ = agent._matchers()
    for group in matchers:
        for matcher in group:
            getattr(matcher, "pattern", None)  # the lazy matcher's compiled regex


def _table(agents: pl.Series, cfg: Config) -> pl.DataFrame:
    from botguard.features import agent_table

    return agent_table(agents, cfg)


class AgentProcess:
    """``submit(agents, cfg)`` → a callable returning the agent table. Use as a context manager
    so the process is shut down with the run (killed, if the run fails)."""

    def __init__(self, *, start: bool = True) -> None:
        self._pool: ProcessPoolExecutor | None = None
        #: Tables built here because the process failed, and why (the last failure).
        self.fallbacks = 0
        self.last_failure: str | None = None
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
            except (OSError, RuntimeError) as exc:  # BrokenProcessPool is a RuntimeError
                self._failed(exc)
        if future is None:
            thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botguard-agents")
            local = thread.submit(_table, agents, cfg)
            thread.shutdown(wait=False)
            return local.result

        def result() -> pl.DataFrame:
            assert future is not None
            try:
                return future.result()
            except Exception as exc:
                # The process died, could not unpickle, or could not import what it needs
                # where the parent can: build the table here. A genuine error in the table
                # code raises again, here, with its own traceback.
                self._failed(exc)
                return _table(agents, cfg)

        return result

    def _failed(self, exc: BaseException) -> None:
        self.fallbacks += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"
        logging.getLogger("botguard").warning(
            "agent process failed (%s); building the agent table in this process", self.last_failure
        )

    def close(self) -> None:
        """Stop the process and wait until it has gone. It is stopped, not asked to finish:
        by now its table has been read, or the run has failed and nobody will read it; and
        it holds nothing that needs closing. Waiting matters: the CLI ends its process
        quickly only once no child is left (``cli.app.main``)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def for_inputs(total_bytes: int | None) -> AgentProcess:
    """A started process when the input is big enough to repay it, else the thread fallback."""
    return AgentProcess(start=total_bytes is not None and total_bytes >= MIN_INPUT_BYTES)


def for_paths(inputs: list[str]) -> AgentProcess:
    """``for_inputs`` for the files the run will read (``sources.files.expand_inputs``, sized
    with ``os.stat``): the CLI calls it first thing, so that the process starts before the
    heavy imports. Stdin counts as small; inputs that cannot be listed or sized give no
    process, and the run reports them as it would anyway."""
    from botguard.errors import BotguardError
    from botguard.sources.files import STDIN, expand_inputs

    try:
        total = sum(os.path.getsize(p) for p in expand_inputs(inputs) if p != STDIN)
    except (OSError, BotguardError):
        return for_inputs(None)
    return for_inputs(total)
