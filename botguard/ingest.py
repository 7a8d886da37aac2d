"""Ingest stage: sources → parser → batches of the normalized hits frame, with statistics.

Lines are never dropped silently: each one is parsed, counted as blank/comment, or rejected
with a reason (and, on request, written verbatim to a rejects file). The error-ratio check
turns a wrong ``--format`` into a refusal instead of a quietly empty result.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import polars as pl

from botguard.config.models import Config
from botguard.errors import InputError, RefusedError
from botguard.parsers import LogParser, get_parser, sniff_candidates
from botguard.parsers.normalize import TrustedProxies
from botguard.schema import HITS_SCHEMA, REJECTS_SCHEMA
from botguard.sources.cursors import Cursor, advanced, inspect_all, lost, merged
from botguard.sources.files import Chunk, SourceProblem, expand_inputs, read_chunks, same_content

REPLACEMENT = "\ufffd"


#: Columns whose absence from a whole log is worth a warning: the checks built on them (malformed
#: requests, error shares, referer-less pages, sizes) read nothing. The agent is warned about by
#: the features stage, with what it cannot see.
WATCHED_COLUMNS = ("method", "status", "referer", "bytes")


@dataclass
class ParseStats:
    format: str = ""
    format_sniffed: bool = False
    lines: int = 0
    parsed: int = 0
    blank: int = 0
    comments: int = 0
    rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    #: Rejects per input file: a file of another format among several shows which one it is.
    rejected_by_source: Counter[str] = field(default_factory=Counter)
    invalid_utf8_lines: int = 0
    bytes_read: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    sources: list[str] = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)
    sample_reject: str | None = None
    #: A W3C ``#Fields:`` directive was seen while reading another format (a hint for refusals).
    w3c_directive: bool = False
    json_like: bool = False
    #: Watched columns (``WATCHED_COLUMNS``) with a value on at least one parsed line.
    columns_seen: set[str] = field(default_factory=set)
    #: Lines dated more than a day after this machine's clock: kept, but they do not move
    #: ``last_ts`` (the data clock that block expiry and incremental windows follow).
    future_lines: int = 0
    future_latest: datetime | None = None
    #: (parsed, rejected) lines of the traffic an incremental run continues: a run with few
    #: lines of its own is judged on the ratio over those too.
    carried_lines: tuple[int, int] = (0, 0)

    @property
    def never_logged(self) -> list[str]:
        """Watched columns empty on every parsed line: the format does not capture them (or a
        typo in a log_format variable or a JSON key hides them); their checks cannot run."""
        return [c for c in WATCHED_COLUMNS if c not in self.columns_seen] if self.parsed else []

    @property
    def error_ratio(self) -> float:
        considered = self.parsed + self.rejected
        return self.rejected / considered if considered else 0.0

    @property
    def judged_ratio(self) -> float:
        """The share of bad lines ``max_error_ratio`` is held against: this run's, or with
        fewer than ``MIN_JUDGED_LINES`` of them (a quiet five minutes, one half-written line
        read on its own), that of the carried traffic and this run's together."""
        if self.parsed + self.rejected >= MIN_JUDGED_LINES or not any(self.carried_lines):
            return self.error_ratio
        parsed, rejected = self.parsed + self.carried_lines[0], self.rejected + self.carried_lines[1]
        return rejected / (parsed + rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_sniffed": self.format_sniffed,
            "lines": self.lines,
            "parsed": self.parsed,
            "blank": self.blank,
            "comments": self.comments,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "rejected_by_source": dict(self.rejected_by_source.most_common()),
            "invalid_utf8_lines": self.invalid_utf8_lines,
            "error_ratio": round(self.error_ratio, 6),
            "future_lines": self.future_lines,
            "bytes_read": self.bytes_read,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "sources": self.sources,
            "problems": [f"{p.source}: {p.message}" for p in self.problems],
            "never_logged": self.never_logged,
        }


#: Runs with at least this many lines are judged on their own share of bad lines.
MIN_JUDGED_LINES = 200
#: How far past this machine's clock a line's time may be before it stops moving the data clock.
FUTURE_SLACK = timedelta(days=1)


def _lines_frame(chunk: Chunk) -> tuple[pl.DataFrame, int]:
    """The chunk's lines (``line``, ``line_no``, ``source``) and how many had invalid UTF-8."""
    invalid = 0
    try:
        lines = pl.read_lines(chunk.data)
    except pl.exceptions.ComputeError:
        # Not UTF-8 (Latin-1 logs): decode with replacement, count the damaged lines.
        text = chunk.data.decode("utf-8", errors="replace")
        lines = pl.read_lines(text.encode("utf-8"))
        invalid = int(lines["line"].str.contains(REPLACEMENT, literal=True).sum())
    n = len(lines)
    exprs = [
        pl.int_range(chunk.first_line_no, chunk.first_line_no + n, dtype=pl.Int64).alias("line_no"),
        pl.lit(chunk.source).alias("source"),
    ]
    if chunk.find(b"\r"):  # CRLF logs: strip only when there is something to strip
        exprs.append(pl.col("line").str.strip_chars_end("\r"))
    return lines.with_columns(exprs), invalid


@dataclass
class _Parsed:
    """One chunk parsed, before it is counted: ``lines`` read, hits, rejects (blank and comment
    lines among them), lines with invalid UTF-8."""

    lines: int
    hits: pl.DataFrame
    rejects: pl.DataFrame
    invalid_utf8: int = 0


#: Chunks parsed at once when the parser keeps no state between chunks: one parse leaves
#: part of a core idle (its single-threaded string passes), a second fills it.
PARSE_WORKERS = min(2, os.cpu_count() or 1)


def sniff(lines: pl.DataFrame, cfg: Config) -> LogParser:
    """The candidate that parses most of ``lines``; on a tie the one that fills the most fields,
    then the one that declares the fewest (a common log is 'common', not a 'combined' whose
    referer and agent are always empty)."""
    best: tuple[float, float, int, int] | None = None
    chosen: LogParser | None = None
    n = max(len(lines), 1)
    for order, parser in enumerate(sniff_candidates(cfg)):
        # A bound on the hits is cheaper than a parse (a regex scan of the sample): a format
        # that can parse less than the best so far is passed over, one that can parse
        # nothing scores nothing without a parse.
        could_parse = getattr(parser, "could_parse", None)
        bound = could_parse(lines) if could_parse is not None else None
        if bound is not None and best is not None and round(bound / n, 2) < best[0]:
            continue
        if bound == 0:
            ratio, filled = 0.0, 0.0
        else:
            try:
                hits, _ = parser.parse(lines.lazy(), cfg.ingest.default_timezone)
            except pl.exceptions.PolarsError:
                continue
            ratio = round(len(hits) / n, 2)
            filled = sum(hits.select(pl.all().is_not_null().sum()).row(0)) / n if len(hits) else 0.0
        key = (ratio, round(filled, 1), -len(parser.fields), -order)
        if best is None or key > best:
            best, chosen = key, parser
    assert chosen is not None
    return chosen


T = TypeVar("T")


def prefetched(items: Iterator[T], name: str) -> Iterator[T]:
    """``items``, with the next one produced in a worker thread while the caller works on this
    one. Reading and Polars release the GIL, so the two overlap; one item in flight bounds the
    memory."""
    from concurrent.futures import ThreadPoolExecutor

    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        future = pool.submit(next, items, done)
        while True:
            item = future.result()
            if item is done:
                return
            future = pool.submit(next, items, done)
            yield item  # type: ignore[misc]


class Ingest:
    """Iterate ``batches()`` for hits frames; ``stats`` fills in as you go; ``finish()``
    applies the error-ratio rule. Rejected lines go to ``rejects`` (a text file) if given."""

    def __init__(
        self,
        inputs: list[str],
        cfg: Config,
        *,
        format: str | None = None,
        rejects: IO[str] | None = None,
        strict: bool = False,
        on_progress: Callable[[int], None] | None = None,
        cursors: list[Cursor] | None = None,
        ranges: Any = None,
    ) -> None:
        """``cursors`` (from an earlier run's ``cursors_after()``) makes the run incremental:
        each log is read from where an earlier run stopped, and an unterminated last line is
        left for the next run. ``ranges`` (a ``RangeSet``) resolves trusted proxies named by
        their range source; without it they are loaded from the data directory."""
        missing: list[str] = []
        # Incremental runs are cron's: a rotated log that is not there (yet) is skipped, as
        # logrotate's missingok does, and named in the run's problems.
        self.paths = expand_inputs(inputs, missing=missing if cursors is not None else None)
        copies = same_content(self.paths)
        self.cfg = cfg
        self.format = format or cfg.ingest.format
        self.rejects = rejects
        self.strict = strict
        self.on_progress = on_progress
        skipped = {path for path, _ in copies}
        self.paths = [p for p in self.paths if p not in skipped]
        self.stats = ParseStats(sources=[p if p != "-" else "<stdin>" for p in self.paths])
        self.stats.problems += [
            SourceProblem(path, f"same content as {kept}: read once") for path, kept in copies
        ]
        self.stats.problems += [SourceProblem(path, "not found: skipped") for path in missing]
        self.cursors = cursors
        self.log_states = inspect_all(self.paths, cursors) if cursors is not None else []
        self._advanced: list[Cursor] = []
        self.lines_read: dict[str, int] = {}
        for path, state in zip(self.paths, self.log_states, strict=False):
            if state.same_as is not None:
                self.stats.problems.append(SourceProblem(
                    path, f"holds the same lines as {state.same_as} (a rotation in progress): read once"))
            if state.replaced is not None:
                self.stats.problems.append(SourceProblem(
                    path, f"begins like a log read before (to line {state.replaced.line_no - 1:,}) but holds other "
                    "lines there: another log, read from its start"))
        #: Lines that may have been lost: said even by a quiet run.
        self.alerts = [
            f"{c.path or 'a log'} as the previous run read it (to line {c.line_no - 1:,}) is not among this run's "
            "logs (rotated twice since?): lines written to it after that run were not read; name the older "
            "rotations too (access.log.2.gz) or use a glob (access.log*)"
            for c in lost(cursors or [], self.log_states)
        ]
        # Wall clock on purpose: a line dated after it is a skewed clock, not traffic.
        self.clock_limit = datetime.now(UTC) + FUTURE_SLACK
        self.ranges = ranges
        self.proxies = TrustedProxies(self._proxy_networks()) if cfg.ingest.trusted_proxies else None
        self.parser: LogParser | None = None
        if self.format != "auto":
            self.parser = get_parser(self.format, cfg)
            self.stats.format = self.parser.name

    def _proxy_networks(self) -> list[str]:
        """``ingest.trusted_proxies`` with each range source name replaced by its networks.

        A named source that is not loaded stops the run: trusting nobody would make every
        visitor look like the proxy, and the blocklist would name the proxy's edges.
        """
        from botguard.config.types import SOURCE_NAME

        listed = list(self.cfg.ingest.trusted_proxies)
        named = [p for p in listed if SOURCE_NAME.fullmatch(p)]
        if not named:
            return listed
        if self.ranges is None:
            from botguard.ranges import load_ranges

            self.ranges = load_ranges(self.cfg)
        missing = [n for n in named if not self.ranges.loaded(n)]
        if missing:
            from botguard.ranges import resolve_data_dir

            problems = [p for p in self.ranges.problems if p.split(":", 1)[0] in missing]
            raise InputError(
                f"ingest.trusted_proxies names {', '.join(missing)}, whose ranges are not loaded in "
                f"{resolve_data_dir(self.cfg)}" + (f" ({'; '.join(problems)})" if problems else "")
                + ": load them with `botguard ranges update` (or `--from DIR` offline), or list the "
                "proxies' networks instead"
            )
        return [net for p in listed for net in (self.ranges.networks[p] if p in named else [p])]

    def total_bytes(self) -> int | None:
        try:
            total = sum(Path(p).stat().st_size for p in self.paths if p != "-")
        except OSError:
            return None
        # Resumed logs: what an earlier run read is not read again (plain files; compressed
        # ones count whole, as their progress is counted in content bytes anyway).
        return total - sum(s.start().offset for s in self.log_states if s.size is not None and not s.done)

    def _chunks(self) -> Iterator[Chunk]:
        # Pieces of a batch, parsed side by side (see ``_parsed``) and joined again (``_joined``).
        batch = max(1, self.cfg.ingest.batch_bytes // PARSE_WORKERS)
        if self.cursors is None:
            for path in self.paths:
                yield from read_chunks(path, batch, self.stats.problems)
            return
        for path, state in zip(self.paths, self.log_states, strict=True):
            stop = next_line = None
            complete = state.done
            if not state.done:
                problems = len(self.stats.problems)
                for chunk in read_chunks(
                    path, batch, self.stats.problems, start=state.start(), hold_partial=state.live
                ):
                    stop, next_line = chunk.stop, chunk.first_line_no + chunk.n_lines
                    yield chunk
                complete = len(self.stats.problems) == problems  # no truncated stream
            if next_line is not None:
                self.lines_read[path] = next_line - state.start().line_no
            cursor = advanced(state, stop, next_line, complete)
            if cursor is not None:
                self._advanced.append(cursor)

    def renamed(self) -> dict[str, str]:
        """Logs read by earlier runs under another name (rotated): old name → this run's."""
        return {
            s.cursor.path: path for path, s in zip(self.paths, self.log_states, strict=True)
            if s.cursor is not None and s.cursor.path and s.cursor.path != path and s.same_as is None
        }

    def cursors_after(self) -> list[Cursor]:
        """Where this run stopped in each log, plus earlier runs' cursors for logs not given
        this time (to call after the batches are consumed)."""
        return merged(self.cursors or [], self.log_states, self._advanced)

    def _parsed(self) -> Iterator[pl.DataFrame]:
        """Hits of each chunk, in order. Reading a batch from the page cache and counting its
        lines is a tenth of the parse time: done in a thread of its own, it costs no core.
        Chunks are parsed ``PARSE_WORKERS`` at a time once the parser is known and keeps no
        state between chunks (W3C's ``#Fields:`` does); they are counted in log order."""
        from concurrent.futures import ThreadPoolExecutor

        pending: deque[tuple[Chunk, Future[_Parsed]]] = deque()

        def counted(keep: int) -> Iterator[pl.DataFrame]:
            while len(pending) > keep:
                chunk, future = pending.popleft()
                hits = self._counted(chunk, future.result())
                if len(hits):
                    yield hits

        with ThreadPoolExecutor(max_workers=PARSE_WORKERS, thread_name_prefix="botguard-parse") as pool:
            for chunk in prefetched(self._chunks(), "botguard-read"):
                if self.parser is None:
                    self._sniff(chunk)  # here, so the first chunk too parses beside the next
                # No parser yet (a chunk with no lines) or one with state: one at a time.
                side_by_side = getattr(self.parser, "stateless", False)
                pending.append((chunk, pool.submit(self._parse_raw, chunk)))
                yield from counted(PARSE_WORKERS - 1 if side_by_side else 0)
            yield from counted(0)

    @staticmethod
    def _joined(pieces: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """Parsed pieces joined ``PARSE_WORKERS`` at a time: the later stages see batches of
        about ``batch_bytes`` (their per-batch costs do not double), while two parses of half
        a batch each hold no more memory than one of a whole batch did. Pieces of different
        logs are not joined."""
        group: list[pl.DataFrame] = []
        for hits in pieces:
            if group and hits["source"][0] != group[-1]["source"][-1]:
                # A batch never spans two logs: a log's lines are placed by their own times.
                yield Ingest._join(group)
                group = []
            group.append(hits)
            if len(group) == PARSE_WORKERS:
                yield Ingest._join(group)
                group = []
        if group:
            yield Ingest._join(group)

    @staticmethod
    def _join(group: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(group, rechunk=True) if len(group) > 1 else group[0]

    def batches(
        self, prefetch: bool = True, then: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    ) -> Iterator[pl.DataFrame]:
        """Hits batches in log order. With ``prefetch``, the next batch is read and parsed in a
        worker thread while the caller works on this one: Polars releases the GIL, so parsing
        and the later stages keep both cores busy. One batch in flight (its pieces parsing
        side by side, see ``_parsed``) bounds the memory.
        ``then`` is applied to each batch in that worker too (the first per-hit stage)."""
        parsed = self._joined(self._parsed())
        source = parsed if then is None else map(then, parsed)
        yield from prefetched(source, "botguard-ingest") if prefetch else source

    def _parse_raw(self, chunk: Chunk) -> _Parsed:
        """Parse one chunk; nothing is counted here (``_counted`` does, in order), so chunks of
        a stateless parser may be parsed side by side. The parser is known (``_sniff``) unless
        the chunk has no lines."""
        cfg = self.cfg
        tz = cfg.ingest.default_timezone
        if self.parser is not None and hasattr(self.parser, "parse_bytes"):
            # Straight from bytes when the format allows: no per-line frame at all.
            parsed = self.parser.parse_bytes(chunk, tz)
            if parsed is not None:
                return _Parsed(chunk.n_lines, *self._proxied(parsed))
        lines, invalid = _lines_frame(chunk)
        if lines.is_empty():
            return _Parsed(0, pl.DataFrame(schema=HITS_SCHEMA), pl.DataFrame(schema=REJECTS_SCHEMA), invalid)
        assert self.parser is not None
        return _Parsed(len(lines), *self._proxied(self.parser.parse(lines.lazy(), tz)), invalid)

    def _sniff(self, chunk: Chunk) -> None:
        """Choose the parser from the first lines of ``chunk`` (the first chunk of the run).
        Only those lines are read apart: the chunk itself then takes the chosen parser's fast
        path like every other (a 16 MiB first chunk through the regexes cost 0.1-0.2 s)."""
        n = self.cfg.ingest.sniff_lines * 4
        end, size = 0, chunk.size
        for _ in range(n):
            end = chunk.raw.find(b"\n", end, size) + 1
            if end <= 0:
                end = size
                break
        head = Chunk(chunk.source, chunk.first_line_no, chunk.raw, min(n, chunk.n_lines), end=end)
        lines, _ = _lines_frame(head)
        if lines.is_empty():
            return  # nothing to sniff in this chunk (blank lines): the next one decides
        sample = lines.filter(
            (pl.col("line").str.strip_chars() != "") & ~pl.col("line").str.starts_with("#")
        )
        self.parser = sniff(sample.head(self.cfg.ingest.sniff_lines), self.cfg)
        self.stats.format = self.parser.name
        self.stats.format_sniffed = True

    def _proxied(self, parsed: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
        hits, rejects = parsed
        if self.proxies is not None:
            hits = self.proxies.apply(hits)
        return hits, rejects

    def _counted(self, chunk: Chunk, parsed: _Parsed) -> pl.DataFrame:
        """The chunk's hits, once its lines, rejects and times are in the statistics."""
        stats = self.stats
        stats.bytes_read += chunk.size
        stats.lines += parsed.lines
        stats.invalid_utf8_lines += parsed.invalid_utf8
        hits, rejects = parsed.hits, parsed.rejects
        if len(rejects):
            # Blank and comment lines are not rejects; sorting them out here, among the few
            # lines that failed, is cheaper than a pass over every line.
            blank = rejects["line"].str.strip_chars() == ""
            comment = ~blank & rejects["line"].str.starts_with("#")
            stats.blank += int(blank.sum())
            stats.comments += int(comment.sum())
            if not stats.w3c_directive and self.parser is not None and self.parser.name != "w3c":
                stats.w3c_directive = bool(rejects["line"].str.starts_with("#Fields:").any())
            if not stats.json_like:
                stats.json_like = bool(rejects["line"].str.strip_chars_start().str.starts_with("{").any())
            rejects = rejects.filter(~blank & ~comment)
        if len(rejects):
            self._reject(rejects)
        stats.parsed += len(hits)
        if len(hits):
            unseen = [c for c in WATCHED_COLUMNS if c not in stats.columns_seen]
            if unseen:
                present = hits.select(pl.col(c).is_not_null().any() for c in unseen).row(0)
                stats.columns_seen.update(c for c, p in zip(unseen, present, strict=True) if p)
            ahead = pl.col("ts") > self.clock_limit
            lo, hi, n_ahead, latest = hits.select(
                pl.col("ts").min().alias("lo"), pl.col("ts").filter(~ahead).max().alias("hi"),
                ahead.sum().alias("n"), pl.col("ts").max().alias("latest"),
            ).row(0)
            stats.first_ts = lo if stats.first_ts is None else min(stats.first_ts, lo)
            if hi is not None:
                stats.last_ts = hi if stats.last_ts is None else max(stats.last_ts, hi)
            if n_ahead:
                stats.future_lines += int(n_ahead)
                stats.future_latest = latest if stats.future_latest is None else max(stats.future_latest, latest)
        # A wrong format shows in the first batch: stop early instead of reading gigabytes.
        if stats.parsed + stats.rejected >= 5000 and stats.error_ratio > 0.5:
            self.finish()
        if self.on_progress:
            self.on_progress(chunk.size)
        return hits

    def _reject(self, rejects: pl.DataFrame) -> None:
        stats = self.stats
        stats.rejected += len(rejects)
        for reason, n in rejects.group_by("reason").len().iter_rows():
            stats.rejected_by_reason[reason] += n
        for source, n in rejects.group_by("source").len().iter_rows():
            stats.rejected_by_source[source] += n
        if stats.sample_reject is None:
            r = rejects.row(0, named=True)
            stats.sample_reject = f"{r['source']}:{r['line_no']}: {r['line'][:300]}"
        if self.strict:
            r = rejects.row(0, named=True)
            raise InputError(
                f"{r['source']}:{r['line_no']}: line does not parse as {stats.format!r} "
                f"({r['reason']}): {r['line'][:300]}",
                hint="drop --strict to count and skip bad lines",
            )
        if self.rejects is not None:
            out = rejects.select(
                pl.concat_str(
                    [pl.col("source"), pl.col("line_no").cast(pl.String), pl.col("reason"), pl.col("line")],
                    separator="\t",
                )
            ).to_series()
            self.rejects.write("\n".join(out.to_list()) + "\n")

    def finish(self) -> ParseStats:
        stats = self.stats
        ratio = stats.judged_ratio
        if ratio > self.cfg.ingest.max_error_ratio and stats.rejected:
            considered = stats.parsed + stats.rejected
            share = f"{stats.rejected} of {considered} lines ({ratio:.0%})"
            tried = (
                f"no built-in format matched the log ({stats.format!r} came closest): {share} rejected"
                if stats.format_sniffed and not stats.parsed
                else f"{share} did not parse as {stats.format!r}{' (sniffed)' if stats.format_sniffed else ''}"
            )
            reasons = ", ".join(f"{k}: {v:,}" for k, v in stats.rejected_by_reason.most_common())
            tried += f" ({reasons})"
            top = stats.rejected_by_reason.most_common(1)[0][0] if stats.rejected_by_reason else ""
            if stats.w3c_directive:
                first = "the log has a W3C #Fields: directive (IIS): try --format w3c; otherwise "
            elif top in _REASON_HINTS and stats.parsed:
                # The lines have the format's shape; one field does not read.
                first = _REASON_HINTS[top] + "; otherwise "
            elif stats.json_like:
                first = (
                    "the lines are JSON: map its keys under ingest.formats (type: json, fields: "
                    "{ts: ..., client_ip: ..., path: ..., status: ..., user_agent: ...}) and pass --format NAME; otherwise "
                )
            else:
                first = ""
            raise RefusedError(
                f"{tried}; "
                f"max_error_ratio is {self.cfg.ingest.max_error_ratio:.0%}. "
                f"First bad line: {stats.sample_reject}",
                hint=first + "pick the right --format (or define one under ingest.formats), or raise "
                "ingest.max_error_ratio; --rejects FILE keeps the bad lines",
            )
        return stats


#: What to check when most rejects share one reason (the format matched the lines' shape).
_REASON_HINTS = {
    "bad_timestamp": (
        "the time field does not read as a timestamp: $time_local is '10/Oct/2000:13:55:36 -0700', "
        "$time_iso8601 ISO 8601, $msec epoch seconds (milliseconds glued on, as HAProxy writes "
        "them, need their own variable)"
    ),
    "bad_client_ip": (
        "the client field is not an address (Apache's HostnameLookups writes host names in %h; "
        "log the address, or key clients on another field with session.key)"
    ),
    "bad_status": "the status field is not a 3-digit HTTP status: check its position in the log_format",
}


def read_hits(inputs: list[str], cfg: Config, **kw: Any) -> tuple[pl.DataFrame, ParseStats]:
    """All hits in memory (small inputs, tests). Streaming callers use ``Ingest.batches``."""
    ing = Ingest(inputs, cfg, **kw)
    frames = list(ing.batches())
    stats = ing.finish()
    hits = pl.concat(frames) if frames else pl.DataFrame(schema=HITS_SCHEMA)
    return hits, stats
