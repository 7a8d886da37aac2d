"""The one module that wires stages together: sources → parsers → sessions → features →
rules + model → scoring → policy → sinks. The CLI calls these functions; nothing here
imports the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import polars as pl

from botguard import __version__
from botguard.config import Config, config_hash
from botguard.errors import BotguardError, InputError
from botguard.ingest import Ingest, ParseStats

ProgressFactory = Callable[[int | None], AbstractContextManager[Callable[[int], None]]]


def _progress(progress: ProgressFactory | None, ing: Ingest) -> AbstractContextManager[Callable[[int], None]]:
    if progress is None:
        return nullcontext(lambda n: None)
    return progress(ing.total_bytes())


# --------------------------------------------------------------------------- parse
_UA_SEED = 0x75617331


@dataclass
class ParseResult:
    stats: ParseStats
    extra: dict[str, Any]


def parse_logs(
    inputs: list[str], cfg: Config, *, format: str | None = None, output: Path | None = None,
    rejects: IO[str] | None = None, strict: bool = False, progress: ProgressFactory | None = None,
) -> ParseResult:
    """Stream logs to Parquet and summarize, memory flat.

    The batches are a Polars IO source sunk to Parquet by Polars' streaming writer: it
    encodes and compresses on both cores while the next batch is parsed, about twice as fast
    as a Python-fed writer. zstd level 1: 10% less encoding time than the default level for
    a file 1% larger.
    """
    from polars.io.plugins import register_io_source

    from botguard.schema import HITS_SCHEMA

    ing = Ingest(inputs, cfg, format=format, rejects=rejects, strict=strict)
    tmp = output.with_name(f".{output.name}.tmp") if output else None
    clients: list[pl.Series] = []
    agents: pl.DataFrame | None = None

    def summarized() -> Iterator[pl.DataFrame]:
        nonlocal agents
        for batch in ing.batches():
            clients.append(batch["client_ip"].drop_nulls().unique())
            if len(clients) > 8:
                clients[:] = [pl.concat(clients).unique()]
            # Counted per 64-bit hash of the agent (long strings hash once, the table holds
            # integers); the text rides along.
            a = batch.group_by(pl.col("user_agent").hash(seed=_UA_SEED).alias("_h")).agg(
                pl.col("user_agent").first(), pl.len()
            )
            agents = a if agents is None else pl.concat([agents, a]).group_by("_h").agg(
                pl.col("user_agent").first(), pl.col("len").sum()
            )
            yield batch

    def source(with_columns: Any, predicate: Any, n_rows: Any, batch_size: Any) -> Iterator[pl.DataFrame]:
        yield from summarized()

    try:
        with _progress(progress, ing) as advance:
            ing.on_progress = advance
            if tmp is not None and output is not None:
                register_io_source(source, schema=HITS_SCHEMA).sink_parquet(tmp, compression="zstd", compression_level=1)
            else:
                for _ in summarized():
                    pass
        stats = ing.finish()
        if tmp is not None and output is not None:
            tmp.replace(output)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    n_clients = len(pl.concat(clients).unique()) if clients else 0
    top = (
        agents.select("user_agent", "len").sort(["len", "user_agent"], descending=[True, False], nulls_last=True).head(10)
        if agents is not None else None
    )
    extra = {
        "distinct_clients": n_clients,
        "top_user_agents": [] if top is None else [(a, int(n)) for a, n in top.iter_rows()],
    }
    return ParseResult(stats, extra)


# --------------------------------------------------------------------------- features
def compute_features(
    inputs: list[str], cfg: Config, *, format: str | None = None, rejects: IO[str] | None = None,
    strict: bool = False, progress: ProgressFactory | None = None, ranges: Any = None,
    keep_sessions: bool = True, agent_process: Any = None,
) -> Any:
    """Features of the logs; pass ``keep_sessions=False`` when only client rows are wanted
    (memory then stays flat in the length of the log). ``agent_process``: see
    ``build_features``; none is started here, since a spawned process imports the caller's
    main module again (a script without an ``if __name__ == "__main__"`` guard would run
    twice)."""
    ing = Ingest(inputs, cfg, format=format, rejects=rejects, strict=strict, ranges=ranges)
    with _progress(progress, ing) as advance:
        from botguard.features import build_features

        ing.on_progress = advance
        flagger = _flagger(cfg)
        result = build_features(
            ing.batches(then=flagger), cfg, ranges=ing.ranges, keep_sessions=keep_sessions,
            agent_process=agent_process, flagger=flagger,
        )
    result.parse_stats = ing.finish()
    return result


def _flagger(cfg: Config, inferred: dict[str, list[str]] | None = None) -> Any:
    """Per-hit flags, run in the parsing thread: it balances the work of the two threads."""
    from botguard.features.hitflags import Flagger

    return Flagger(cfg, inferred=inferred)


# --------------------------------------------------------------------------- analyze
@dataclass
class AnalyzeResult:
    decisions: pl.DataFrame
    entries: pl.DataFrame
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None
    #: Warnings a quiet run prints all the same (lines that may have been lost).
    alerts: list[str] = field(default_factory=list)

    def top_offenders(self, n: int) -> list[dict[str, Any]]:
        d = self.decisions.filter(pl.col("action").is_in(["block", "challenge"])).head(n)
        return list(d.iter_rows(named=True))


def score_clients(clients: pl.DataFrame, cfg: Config, *, product_regs: Any = None, force: bool = False) -> Any:
    """Rules + model → scores → policy. Returns a PolicyResult (decisions, entries, …)."""
    from botguard import rules as rules_mod
    from botguard.model import predict
    from botguard.policy import decide
    from botguard.scoring import model_evidence, score

    evidence = rules_mod.evaluate(clients, cfg)
    warnings: list[str] = []
    model_scores = predict(clients, cfg, warnings) if cfg.model.enabled else None
    evidence = pl.concat([evidence, model_evidence(model_scores, cfg)], how="diagonal_relaxed")
    scored = score(clients, evidence)
    result = decide(clients, scored, cfg, product_regs=product_regs, force=force)
    result.notes.extend(warnings)
    if model_scores is not None:
        result.decisions = result.decisions.join(model_scores.select("client", "model_score"), on="client", how="left")
    return result


def analyze(
    inputs: list[str], cfg: Config, *, out_dir: Path, format: str | None = None,
    state_path: Path | None = None, exports: list[tuple[str, Path]] | None = None,
    force: bool = False, rejects: IO[str] | None = None, strict: bool = False,
    config_path: Path | None = None, progress: ProgressFactory | None = None, ranges: Any = None,
    agent_process: Any = None, incremental: bool = False,
) -> AnalyzeResult:
    """The whole pipeline. With ``incremental`` (needs ``state_path``) only the lines written
    since the previous incremental run are read, and the clients' features carried in the
    state from earlier runs are continued (``botguard.features.carry``)."""
    if incremental and state_path is None:
        raise BotguardError(
            "--incremental needs --state FILE: the state is where the next run finds this one's features",
        )
    store = None
    if incremental:
        from botguard.state import StateStore

        # Held for the whole run: two runs must not both continue the same carried state.
        # (Other runs take it only to record their blocks.)
        store = StateStore(state_path)  # type: ignore[arg-type]
    try:
        return _analyze(
            inputs, cfg, out_dir=out_dir, format=format, state_path=state_path, store=store, exports=exports,
            force=force, rejects=rejects, strict=strict, progress=progress, ranges=ranges,
            agent_process=agent_process,
        )
    finally:
        if store is not None:
            store.close()


def _analyze(
    inputs: list[str], cfg: Config, *, out_dir: Path, format: str | None, state_path: Path | None,
    store: Any, exports: list[tuple[str, Path]] | None, force: bool, rejects: IO[str] | None,
    strict: bool, progress: ProgressFactory | None, ranges: Any, agent_process: Any,
) -> AnalyzeResult:
    t0 = time.perf_counter()
    carry = None
    sniffed_before = False
    warnings: list[str] = []
    if store is not None:
        from botguard.features.carry import Carry

        carry, set_aside = Carry.load(cfg, store.load_carry())
        chosen = format or cfg.ingest.format
        if not set_aside and carry.format and chosen not in ("auto", carry.format):
            carry, set_aside = Carry.fresh(cfg), f"the carried traffic was read as {carry.format!r}, not {chosen!r}"
        elif not set_aside and carry.format and chosen == "auto" and not carry.format_sniffed:
            carry, set_aside = Carry.fresh(cfg), (
                f"the carried traffic was read with --format {carry.format}, this run sniffs the format")
        if set_aside:
            warnings.append(f"{set_aside}: the logs were read again from their start")
        elif carry.format and carry.format_sniffed and chosen == "auto":
            format = carry.format  # sniffed once: a lone odd line must not be sniffed again
            sniffed_before = True
    ing = Ingest(inputs, cfg, format=format, rejects=rejects, strict=strict,
                 cursors=carry.cursors if carry is not None else None, ranges=ranges)
    if carry is not None:
        ing.stats.columns_seen |= carry.columns_seen  # judged over the carried traffic too
        ing.stats.carried_lines = carry.carried_lines
        carry.rename_sources(ing.renamed())
        if carry.parser_columns and ing.parser is not None and hasattr(ing.parser, "columns"):
            ing.parser.columns = list(carry.parser_columns)
    with _progress(progress, ing) as advance:
        from botguard.features import build_features

        ing.on_progress = advance

        def seal(c: Any) -> None:
            columns = getattr(ing.parser, "columns", None)
            c.parser_columns = list(columns) if columns else None
            if ing.stats.format:  # an explicit format is not kept for the runs that sniff
                c.format_sniffed = ing.stats.format_sniffed or sniffed_before
            c.seal(ing.stats, ing.cursors_after())

        flagger = _flagger(cfg, carry.inferred_products if carry is not None else None)
        feats = build_features(
            ing.batches(then=flagger), cfg, ranges=ing.ranges, keep_sessions=False, agent_process=agent_process,
            carry=carry, seal=seal, clock_limit=ing.clock_limit, flagger=flagger,
        )
    from botguard.sinks.atomic import atomic_file, atomic_write

    stats = ing.finish()
    t_feat = time.perf_counter()
    clients = feats.clients
    warnings.extend(feats.warnings)
    if stats.never_logged:
        one = len(stats.never_logged) == 1
        warnings.append(
            f"{', '.join(stats.never_logged)} {'is' if one else 'are'} empty on every line: the format "
            f"({stats.format}) does not log {'it' if one else 'them'}, or a log_format variable or JSON key "
            "is misspelt; the checks that read them see nothing"
        )
    if carry is not None and carry.aged_out:
        warnings.append(
            f"{carry.aged_out:,} lines are older than the two windows judged (a log read after a newer one, or "
            "lines that arrived late): not counted"
        )
    if stats.future_lines:
        warnings.append(
            f"{stats.future_lines:,} lines are dated more than a day after this machine's clock (the latest "
            f"{stats.future_latest:%Y-%m-%d %H:%M} UTC): they are analysed, but do not move the data clock "
            "(block expiry, incremental windows); check the clock of the server that wrote them"
        )
    warnings.extend(ing.alerts)
    # A truncated .gz or an unreadable file: what was read before it counts, but say so.
    warnings.extend(f"{p.source}: {p.message}" for p in stats.problems)
    if clients.is_empty():
        from botguard.schema import BLOCK_ENTRIES_SCHEMA, DECISIONS_SCHEMA

        decisions = pl.DataFrame(schema=DECISIONS_SCHEMA)
        entries = pl.DataFrame(schema=BLOCK_ENTRIES_SCHEMA)
        refused = None
        campaigns: list[dict[str, Any]] = []
        notes: list[str] = []
    else:
        res = score_clients(clients, cfg, product_regs=getattr(feats, "product_regs", None), force=force)
        decisions, entries, refused, campaigns, notes = res.decisions, res.entries, res.refused, res.campaigns, res.notes
    warnings.extend(notes)
    t_score = time.perf_counter()

    data_to = stats.last_ts if carry is None else carry.last_ts
    data_from = stats.first_ts if carry is None else carry.span_start
    as_of = data_to or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    chash = config_hash(cfg)
    sealed = carry.sealed if carry is not None else None
    if state_path is not None and (refused is None or sealed is not None):
        from botguard.state import StateStore

        with nullcontext(store) if store is not None else StateStore(state_path) as held, held.transaction():
            # One transaction: the blocks and the carried state that produced them are kept
            # together, or (a killed run) neither is and the next run reads the lines again.
            if refused is None:
                allowed = _allowed(cfg, decisions)
                held.record(entries, as_of, cfg.state)
                held.forget_within(allowed)
                entries = held.active(as_of, allow=allowed)
            if sealed is not None:
                held.save_carry(sealed)
    header = {
        "generator": f"botguard {__version__}",
        "config_hash": chash,
        "data_from": data_from.isoformat() if data_from else None,
        "data_to": data_to.isoformat() if data_to else None,
    }
    # Decisions and features are always written (they explain the refusal, too). zstd level 1,
    # as for parse: 15% less encoding time than the default for files 5% larger.
    decisions.write_parquet(out_dir / "decisions.parquet", compression_level=1)
    with atomic_file(out_dir / "decisions.jsonl") as fh:
        _write_jsonl(decisions, fh)
    if len(clients):
        clients.write_parquet(out_dir / "features.parquet", compression_level=1)
        feats.samples.write_parquet(out_dir / "samples.parquet", compression_level=1)
    blocklist_info: dict[str, Any]
    if refused is None:
        entries.write_parquet(out_dir / "entries.parquet", compression_level=1)
        atomic_write(out_dir / "blocklist.txt", _blocklist_text(entries, header))
        blocklist_info = {"written": True, "path": str(out_dir / "blocklist.txt"), "entries": len(entries)}
        if exports and not stats.parsed and state_path is None:
            # Nothing was read (an empty or rotated-away file): an empty run must not empty the
            # lists a firewall loads.
            warnings.append("no line was read: the exports were left as they were")
            exports = []
        if exports:
            from botguard.sinks.export import prepare, write_export

            prepared = prepare(entries)  # validate once, render every requested format
        for fmt, path in exports or []:
            r = write_export(prepared, fmt, path, generated_at=as_of, config_hash=chash)
            blocklist_info.setdefault("exports", []).append(
                {"format": fmt, "path": str(path), "written": r.written, "dropped_over_limit": r.dropped_over_cap})
            if r.dropped_over_cap:
                warnings.append(
                    f"{fmt} export {path}: {r.dropped_over_cap:,} lower-priority entries left out by the "
                    "target's size limit (highest scores kept); the full list is in blocklist.txt"
                )
    else:
        blocklist_info = {"written": False, "refused": refused, "entries": len(entries)}
    t_out = time.perf_counter()
    summary = _summary(decisions, entries, stats, feats, campaigns, blocklist_info, header, warnings,
                       {"features_s": round(t_feat - t0, 3), "scoring_s": round(t_score - t_feat, 3), "output_s": round(t_out - t_score, 3), "total_s": round(t_out - t0, 3)})
    if carry is not None:
        summary["incremental"] = {
            "new_lines": stats.lines,
            "judged_from": data_from.isoformat() if data_from else None,
            "window_closed": carry.rolled,
            "logs": [
                {"path": p, "status": _log_status(st), "lines_read": ing.lines_read.get(p, 0)}
                for p, st in zip(ing.paths, ing.log_states, strict=True)
            ],
        }
    atomic_write(out_dir / "summary.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    try:
        from botguard.sinks.report import write_report

        write_report(out_dir / "report.html", decisions=decisions, timeline=_timeline(feats.timeline, decisions), summary=summary)
    except ImportError:
        pass
    return AnalyzeResult(decisions, entries, summary, warnings, refused, alerts=list(ing.alerts))


def _log_status(state: Any) -> str:
    """What an incremental run did with a log, for the summary."""
    if state.same_as is not None:
        return f"same lines as {state.same_as}: not read"
    if state.replaced is not None:
        return "another log than the one read before: read from its start"
    if state.cursor is None:
        return "new: read from its start"
    if state.done:
        return "read before: nothing new"
    return f"resumed at line {state.cursor.line_no:,}"


def _allowed(cfg: Config, decisions: pl.DataFrame) -> list[str]:
    """Networks a block recorded by an earlier run must not outlive: the allowlist's, and the
    addresses of this run's clients allowlisted by ASN or agent."""
    listed = [str(n) for n in cfg.policy.allowlist.networks]
    if decisions.is_empty() or "reasons" not in decisions.columns:
        return listed
    allowed = decisions.filter(
        (pl.col("action") == "allow") & pl.col("ip").is_not_null()
        & pl.col("reasons").list.eval(pl.element().str.starts_with("allowlisted")).list.any()
    )
    from botguard.sinks.fmt_networks import canonical

    # The client when it is an address or network (an IPv6 /64), else its address.
    nets = canonical(allowed["client"]).fill_null(allowed["ip"])
    return listed + nets.unique().sort().to_list()


def _timeline(timeline: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    if timeline.is_empty():
        return pl.DataFrame(schema={"bucket": pl.Datetime("us", "UTC"), "action": pl.String, "requests": pl.Int64})
    return (
        timeline.join(decisions.select("client", "action"), on="client", how="left")
        .group_by("bucket", "action").agg(pl.col("requests").sum())
        .sort("bucket", "action")
    )


def _write_jsonl(decisions: pl.DataFrame, fh: BinaryIO) -> None:
    """The decisions as JSON lines, streamed into ``fh``: a log of 600,000 clients gives a
    250 MB file, which built as one string and then its bytes held twice its size in memory at
    the run's end (the time is the same either way: serializing and syncing it)."""
    if decisions.is_empty():
        return
    decisions.with_columns(
        pl.col("first_seen").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("last_seen").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ).write_ndjson(fh)


def _blocklist_text(entries: pl.DataFrame, header: dict[str, Any]) -> bytes:
    from botguard.sinks.export import render

    gen = datetime.fromisoformat(header["data_to"]) if header.get("data_to") else datetime.now(UTC)
    result = render(entries, "plain", generated_at=gen, config_hash=header["config_hash"])
    data = result.data if isinstance(result.data, bytes) else b"".join(result.data.values())
    extra = f"# data: {header.get('data_from')} .. {header.get('data_to')}\n".encode()
    return extra + data


def _summary(decisions: pl.DataFrame, entries: pl.DataFrame, stats: ParseStats, feats: Any, campaigns: list[dict[str, Any]],
             blocklist: dict[str, Any], header: dict[str, Any], warnings: list[str], timings: dict[str, float]) -> dict[str, Any]:
    actions = {a: 0 for a in ("block", "challenge", "monitor", "allow")}
    for a, n in decisions.group_by("action").len().iter_rows():
        actions[a] = int(n)
    flagged = decisions.filter(pl.col("action") != "allow")
    reasons: dict[str, int] = {}
    kinds = {k: int(n) for k, n in flagged.group_by("kind").len().sort(["len", "kind"], descending=[True, False]).iter_rows()} if len(flagged) else {}
    verified = {}
    if "verified_crawler" in decisions.columns and len(decisions):
        verified = {k: int(n) for k, n in decisions.filter(pl.col("verified_crawler").is_not_null()).group_by("verified_crawler").len()
                    .sort(["len", "verified_crawler"], descending=[True, False]).iter_rows()}
    if len(flagged):
        top_reasons = flagged.select(pl.col("reasons").list.first().str.replace(r"[\d.,%]+", "N").alias("r")).group_by("r").len().sort(["len", "r"], descending=[True, False]).head(15)
        reasons = {r: int(n) for r, n in top_reasons.iter_rows() if r}
    hist = [0] * 10
    if len(decisions):
        for b, n in decisions.select((pl.col("score") * 10).floor().clip(0, 9).cast(pl.Int64).alias("b")).group_by("b").len().iter_rows():
            hist[b] += int(n)
    return {
        **header,
        "clients": len(decisions),
        "actions": actions,
        "kinds": kinds,
        "reasons": reasons,
        "score_histogram": hist,
        "campaigns": campaigns,
        "verified_crawlers": verified,
        "blocklist": blocklist,
        "parse": stats.to_dict(),
        "sessions": feats.n_sessions,
        "late_hits": feats.late_hits,
        # Added to the catalogue config for this run, by key (see catalogue.infer_products).
        "inferred_products": dict(getattr(feats, "inferred_products", {})),
        "warnings": warnings,
        "timings_s": timings,
    }


# --------------------------------------------------------------------------- explain
def explain_client(out_dir: Path, client: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    path = out_dir / "decisions.parquet"
    if not path.exists():
        raise InputError(f"{path}: not found", hint="run `botguard analyze … --out DIR` first")
    decisions = pl.read_parquet(path)
    row = decisions.filter(pl.col("client") == client)
    if row.is_empty() and (network := _enclosing_client(decisions["client"], client)) is not None:
        client = network  # an IPv6 address: its client is its /64
        row = decisions.filter(pl.col("client") == client)
    if row.is_empty():
        close = decisions.filter(pl.col("client").str.contains(client, literal=True)).head(5)["client"].to_list()
        raise InputError(f"client {client!r} is not in {path}", hint=f"similar: {', '.join(close)}" if close else None)
    decision = row.row(0, named=True)
    feats: dict[str, Any] = {}
    fpath = out_dir / "features.parquet"
    if fpath.exists():
        f = pl.read_parquet(fpath).filter(pl.col("client") == client)
        if len(f):
            feats = {k: v for k, v in f.row(0, named=True).items() if not isinstance(v, list | datetime) and k != "client"}
    samples: list[str] = []
    spath = out_dir / "samples.parquet"
    if spath.exists():
        s = pl.read_parquet(spath).filter(pl.col("client") == client)
        for r in s.iter_rows(named=True):
            q = f"?{r['query']}" if r["query"] else ""
            samples.append(f"{r['source']}:{r['line_no']} {r['ts']:%Y-%m-%d %H:%M:%S} {r['method']} {r['path']}{q} {r['status']} \"{r['user_agent']}\"")
    return decision, feats, samples


def _enclosing_client(clients: pl.Series, text: str) -> str | None:
    """The client that is a network containing the address ``text`` (IPv6 clients are /64s)."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    for net in clients.filter(clients.str.contains("/", literal=True)).to_list():
        try:
            if addr in ipaddress.ip_network(net):
                return str(net)
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------- export / state
@dataclass
class ExportResult:
    message: str


def export_entries(
    fmt: str, output: Path, *, from_dir: Path | None, state_path: Path | None, max_entries: int | None,
    diff: Path | None, changes_only: bool, as_of: datetime | None,
) -> ExportResult:
    from botguard.sinks.export import diff_entries, read_plain, write_export

    if (from_dir is None) == (state_path is None):
        raise BotguardError("give exactly one of --from DIR or --state DB")
    if from_dir is not None:
        p = from_dir / "entries.parquet"
        if not p.exists():
            raise InputError(f"{p}: not found (was the blocklist refused?)", hint="run `botguard analyze --out DIR` first")
        entries = pl.read_parquet(p)
        when = as_of
        if when is None:
            summary = json.loads((from_dir / "summary.json").read_text()) if (from_dir / "summary.json").exists() else {}
            when = datetime.fromisoformat(summary["data_to"]) if summary.get("data_to") else datetime.now(UTC)
        chash = None
    else:
        from botguard.state import StateStore

        assert state_path is not None
        store = StateStore(state_path)
        try:
            # The end of the analysed data, as the runs that filled the state saw it (replayed
            # logs age by their own clock), else now.
            when = as_of or store.latest_run() or datetime.now(UTC)
            entries = store.active(when)
        finally:
            store.close()
        chash = None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    note = ""
    if diff is not None or changes_only:
        if diff is None:
            raise BotguardError("--changes-only needs --diff PREVIOUS (the list the WAF has now)")
        previous = read_plain(diff)
        added, removed = diff_entries(previous, entries)
        write_export(added, fmt, output, generated_at=when, max_entries=max_entries, config_hash=chash)
        removed_path = output.with_name(output.name + ".removed")
        write_export(removed, "plain", removed_path, generated_at=when)
        return ExportResult(f"wrote {len(added)} added entries to {output} and {len(removed)} removed to {removed_path}")
    r = write_export(entries, fmt, output, generated_at=when, max_entries=max_entries, config_hash=chash)
    if getattr(r, "dropped_over_cap", 0):
        limit = f"--max-entries {max_entries}" if max_entries is not None else f"the {fmt} limit"
        note = f"; dropped {r.dropped_over_cap} lower-priority entries over {limit}"
    # Formats with one file per address family (aws-waf) write beside ``output``, not to it.
    where = ", ".join(str(p) for p in r.paths) if r.paths else str(output)
    return ExportResult(f"wrote {r.written} entries to {where} ({fmt}){note}")


#: The widest network ``block add`` takes without --force: a typo such as 0.0.0.0/1 would
#: otherwise reach every firewall the exports feed.
WIDEST_MANUAL_BLOCK = {4: 16, 6: 32}


def manual_entry(kind: str, op: str, value: str | None, state_path: Path, *, ttl: str | None = None,
                 note: str | None = None, force: bool = False) -> pl.DataFrame | None:
    """allow/block add|remove|list on the state store; ``list`` returns the rows."""
    import ipaddress

    from botguard.config.types import parse_duration
    from botguard.state import StateStore

    if kind == "block" and op == "add" and value is not None and not force:
        try:
            net = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            net = None  # the store names what is wrong with it
        if net is not None and net.prefixlen < WIDEST_MANUAL_BLOCK[net.version]:
            raise BotguardError(
                f"{value}: a /{net.prefixlen} covers {net.num_addresses:,} addresses; block add takes up to "
                f"/{WIDEST_MANUAL_BLOCK[net.version]} (IPv{net.version})",
                hint="add --force if you mean it",
            )

    store = StateStore(state_path)
    try:
        if op == "list":
            rows = getattr(store, f"{kind}_list")()
            return rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
        assert value is not None
        try:
            if op == "add":
                ttl_s = parse_duration(ttl) if ttl else None
                getattr(store, f"{kind}_add")(value, ttl_s, note, datetime.now(UTC))
            else:
                getattr(store, f"{kind}_remove")(value)
        except ValueError as exc:
            raise BotguardError(str(exc)) from None
        return None
    finally:
        store.close()
