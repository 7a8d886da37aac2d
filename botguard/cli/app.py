"""The botguard command line: a thin Typer layer over the library.

Each command parses arguments, calls one library function and renders the result; library
exceptions become a one-line message with a hint and the documented exit code (0 done,
1 refused, 2 usage/config/input error). Heavy libraries are imported inside commands so that
``botguard --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from botguard import __version__

app = typer.Typer(
    name="botguard",
    help="Find scrapers and bad bots in web access logs; emit safe blocklists and explained decisions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check or show configuration.", no_args_is_help=True)
ranges_app = typer.Typer(help="Load crawler and cloud IP ranges.", no_args_is_help=True)
allow_app = typer.Typer(help="Manual allow entries in the state store (allow always wins).", no_args_is_help=True)
block_app = typer.Typer(help="Manual block entries in the state store.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(ranges_app, name="ranges")
app.add_typer(allow_app, name="allow")
app.add_typer(block_app, name="block")

F = TypeVar("F", bound=Callable[..., Any])

Logs = Annotated[list[str], typer.Argument(help="Log files, globs, directories, .gz, or - for stdin.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config overriding the defaults.")]
FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help="Log format: auto, combined, common, vcombined, alb, cloudfront, cloudflare, caddy, w3c (IIS), haproxy, or a name under ingest.formats.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where `ranges update` stored the range lists (default: $BOTGUARD_DATA, else ranges.data_dir).")]
RejectsOpt = Annotated[Path | None, typer.Option("--rejects", help="Write lines that did not parse here (source, line, reason, line).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first line that does not parse.")]


def _agent_process(logs: list[str]) -> Any:
    """Started before the heavy imports, so the process's own imports run on the core the
    start-up leaves idle (``botguard.agent_process``)."""
    from botguard.agent_process import for_paths

    return for_paths(logs)


def _handled(fn: F) -> F:
    """Turn library errors into messages and exit codes; never a traceback for user errors."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        from botguard.errors import BotguardError, ConfigError

        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            from botguard.cli import render

            for p in exc.problems:
                render.error(p)
            if exc.hint:
                render.info(f"hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except BotguardError as exc:
            from botguard.cli import render

            render.error(str(exc), exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # Writing an output (a missing directory, no permission, a full disk): say which
            # file and why, never a traceback.
            from botguard.cli import render

            where = exc.filename or "output"
            render.error(f"{where}: cannot write: {exc.strerror or exc}", "check the directory exists and is writable")
            raise typer.Exit(2) from None
        except sqlite3.Error as exc:
            # The state database failed mid-run (a full disk, a file damaged under us).
            from botguard.cli import render

            render.error(f"state database: {exc}", "check the disk and the --state file; the run's outputs may be partial")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"botguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """botguard: logs in, explained decisions and WAF-ready blocklists out."""


def _cfg(path: Path | None, data_dir: Path | None = None) -> Any:
    from botguard.config import load_config

    if data_dir is not None:
        # Read wherever the ranges are resolved (and by the agent worker process): the command
        # line wins over $BOTGUARD_DATA and the config.
        from botguard.ranges import ENV_DATA_DIR

        os.environ[ENV_DATA_DIR] = str(data_dir)
    return load_config(path)


def _rejects_file(path: Path | None) -> Any:
    return open(path, "w", encoding="utf-8") if path else None


# --------------------------------------------------------------------------- parse
@app.command()
@_handled
def parse(
    logs: Logs,
    format: FormatOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write normalized hits as Parquet.")] = None,
    config: ConfigOpt = None,
    rejects: RejectsOpt = None,
    strict: StrictOpt = False,
    json: JsonOpt = False,
) -> None:
    """Parse access logs into the normalized hits frame and summarize them.

    Example: botguard parse /var/log/nginx/access.log* --output hits.parquet
    """
    from botguard.cli import render
    from botguard.pipeline import parse_logs

    cfg = _cfg(config)
    fh = _rejects_file(rejects)
    try:
        result = parse_logs(logs, cfg, format=format, output=output, rejects=fh, strict=strict,
                            progress=lambda total: render.progress(total, "parsing", not json))
    finally:
        if fh:
            fh.close()
    if json:
        render.print_json({"parse": result.stats.to_dict(), **result.extra})
    else:
        if result.stats.format_sniffed:
            render.info(f"format: {result.stats.format} (sniffed from the first lines)")
        render.parse_summary(result.stats.to_dict(), result.extra)
        if output:
            render.info(f"wrote {output}")


# --------------------------------------------------------------------------- features
@app.command()
@_handled
def features(
    logs: Logs,
    config: ConfigOpt = None,
    format: FormatOpt = None,
    level: Annotated[str, typer.Option("--level", help="session or client")] = "client",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write features as Parquet.")] = None,
    json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Sessionize hits and compute per-session or per-client features for analysts.

    Example: botguard features access.log --level client --output features.parquet
    """
    if level not in ("session", "client"):
        raise typer.BadParameter("expected 'session' or 'client'", param_hint="--level")
    with _agent_process(logs) as agents:
        from botguard.cli import render
        from botguard.pipeline import compute_features

        cfg = _cfg(config, data_dir)
        result = compute_features(logs, cfg, format=format, keep_sessions=level == "session",
                                  progress=lambda total: render.progress(total, "features", not json),
                                  agent_process=agents)
    frame = result.sessions if level == "session" else result.clients
    if output:
        frame.write_parquet(output)
    if json:
        render.print_json({"rows": len(frame), "columns": frame.columns, "output": str(output) if output else None})
    else:
        render.info(f"{len(frame):,} {level} rows, {len(frame.columns)} columns" + (f" → {output}" if output else ""))
        if not output:
            import polars as pl

            with pl.Config(tbl_rows=20, tbl_cols=12, fmt_str_lengths=40):
                render.out.print(render.safe(str(frame.head(20)), newlines=True))
        for w in result.warnings:
            render.warn(w)


# --------------------------------------------------------------------------- analyze
@app.command()
@_handled
def analyze(
    logs: Logs,
    config: ConfigOpt = None,
    format: FormatOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("botguard-out"),
    state: Annotated[Path | None, typer.Option("--state", help="SQLite state across runs (TTL, repeat offenders).")] = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental",
        help="Read only the lines written since the previous --incremental run with this --state, and "
        "continue the clients' features carried in it (for cron; state.window ages them out).",
    )] = False,
    export: Annotated[list[str] | None, typer.Option("--export", help="Also export FORMAT=FILE (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write the blocklist even above the blast-radius cap.")] = False,
    rejects: RejectsOpt = None,
    strict: StrictOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    force_color: Annotated[bool, typer.Option("--force-color", hidden=True)] = False,
) -> None:
    """Run the whole pipeline: decisions, reasons, blocklist and report.

    Example: botguard analyze /var/log/nginx/access.log --out out/ --export nginx-deny=/etc/nginx/botguard.conf
    """
    exports = []
    for spec in export or []:
        if "=" not in spec:
            raise typer.BadParameter(f"expected FORMAT=FILE, got {spec!r}", param_hint="--export")
        fmt, _, path = spec.partition("=")
        exports.append((fmt, Path(path)))
    with _agent_process(logs) as agents:
        from botguard.cli import render
        from botguard.pipeline import analyze as run_analyze

        render.set_color(force_color)
        cfg = _cfg(config, data_dir)
        fh = _rejects_file(rejects)
        try:
            result = run_analyze(
                logs, cfg, out_dir=out, format=format, state_path=state, exports=exports,
                force=force, rejects=fh, strict=strict, config_path=config,
                progress=lambda total: render.progress(total, "analyzing", not (json or quiet)),
                agent_process=agents, incremental=incremental,
            )
        finally:
            if fh:
                fh.close()
    if json:
        render.print_json(result.summary)
    elif quiet:
        for a in result.alerts:
            render.warn(a)  # on stderr: cron mails it
    else:
        if result.summary["parse"].get("format_sniffed"):
            render.info(f"format: {result.summary['parse']['format']} (sniffed from the first lines)")
        for w in result.warnings:
            render.warn(w)
        render.analyze_summary(result.summary, result.top_offenders(10))
        render.info(f"outputs in {out}/")
    if result.refused:
        if not json:
            render.error(result.refused, "review the decisions, tune the config, or use --force")
        raise typer.Exit(1)


# --------------------------------------------------------------------------- explain
@app.command()
@_handled
def explain(
    client: Annotated[str, typer.Argument(help="The client key (usually the IP address).")],
    from_dir: Annotated[Path, typer.Option("--from", help="An analyze output directory.")] = Path("botguard-out"),
    json: JsonOpt = False,
) -> None:
    """Show one client's decision, reasons, features and sample lines.

    Example: botguard explain 203.0.113.7 --from botguard-out
    """
    from botguard.cli import render
    from botguard.pipeline import explain_client

    decision, feats, samples = explain_client(from_dir, client)
    if json:
        render.print_json({"decision": decision, "features": feats, "samples": samples})
    else:
        render.explain(decision, feats, samples)


# --------------------------------------------------------------------------- model
@app.command()
@_handled
def train(
    logs: Logs,
    labels: Annotated[Path, typer.Option("--labels", help="CSV with client key, label (human, good_bot, bad_bot), optional kind.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write: .npz (numpy arrays, what ships) or .skops.")] = Path("model.npz"),
    config: ConfigOpt = None,
    format: FormatOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Train the classifier on labelled logs.

    Example: botguard train sim/access.log --labels sim/labels.csv --out model.npz
    """
    from botguard.cli import render
    from botguard.model.training import train_from_logs

    cfg = _cfg(config, data_dir)
    meta = train_from_logs(logs, labels, cfg, out=out, format=format, seed=seed)
    if json:
        render.print_json(meta)
    else:
        render.info(f"wrote {out}: {meta['training']['clients']} clients, features: {len(meta['features'])}")
        render.print_json(meta["metrics"])


@app.command()
@_handled
def evaluate(
    logs: Logs,
    labels: Annotated[Path, typer.Option("--labels", help="CSV with client key, label, optional kind.")],
    config: ConfigOpt = None,
    format: FormatOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write metrics JSON here.")] = None,
    json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Score labelled logs with the full pipeline and report precision and recall at the block
    and block+challenge cut-offs, PR-AUC beside the bad-bot share, ROC-AUC, and a per-kind table.

    Example: botguard evaluate sim2/access.log --labels sim2/labels.csv --output metrics.json
    """
    from botguard.cli import render
    from botguard.model.evaluation import describe, evaluate_logs

    cfg = _cfg(config, data_dir)
    metrics = evaluate_logs(logs, labels, cfg, format=format)
    if output:
        import json as _json

        from botguard.sinks.atomic import atomic_write

        atomic_write(output, (_json.dumps(metrics, indent=2) + "\n").encode())
    if json:
        render.print_json(metrics)
    else:
        render.table(
            "Per label (predicted bad_bot = blocked)", ["label", "precision", "recall", "f1", "support"],
            [[k, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
             for k, v in metrics["per_label"].items()],
        )
        render.table(
            "Bad-bot detection by cut-off", ["cut-off", "flagged", "bad bots flagged", "precision", "recall", "humans flagged"],
            [[k, v["flagged"], v["bad_bot_flagged"], f"{v['precision']:.3f}", f"{v['recall']:.3f}",
              f"{v['humans_flagged']} ({v['human_rate']:.2%})"] for k, v in metrics["cutoffs"].items()],
        )
        render.table(
            "Per label and kind", ["label", "kind", "clients", "blocked", "challenged", "blocked share"],
            [[v["label"], v["kind"], v["clients"], v["blocked"], v["challenged"], f"{v['recall']:.3f}"]
             for v in metrics["per_kind"].values()],
        )
        cm = metrics["confusion_matrix"]
        render.table("Decisions by truth (rows = label, columns = action)", ["", *cm["actions"]],
                     [[lab, *row] for lab, row in zip(cm["labels"], cm["matrix"], strict=True)])
        for line in describe(metrics):
            render.info(line)
        for note in metrics["notes"]:
            render.warn(note)


# --------------------------------------------------------------------------- simulate
@app.command()
@_handled
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for access.log, labels.csv, ranges/.")],
    seed: Annotated[int, typer.Option("--seed")] = 1,
    hours: Annotated[float, typer.Option("--hours")] = 24.0,
    clients: Annotated[int, typer.Option("--clients")] = 500,
) -> None:
    """Write synthetic labelled shop traffic (humans, good bots, scrapers of many kinds).

    Example: botguard simulate --out sim --seed 3 --hours 24 --clients 800
    """
    from botguard.cli import render
    from botguard.simulate import simulate as run_simulate

    res = run_simulate(out, seed=seed, hours=hours, clients=clients)
    render.info(f"wrote {res.log_path} ({res.lines:,} lines), {res.labels_path}, {res.ranges_dir}/")
    render.table("Clients by kind", ["kind", "clients"], [[k, v] for k, v in sorted(res.clients_by_kind.items())])


# --------------------------------------------------------------------------- config
@config_app.command("check")
@_handled
def config_check(file: Annotated[Path, typer.Argument(help="YAML config file.")]) -> None:
    """List every problem in a config file (exit 2 if any).

    Example: botguard config check my.yaml
    """
    from botguard.cli import render

    _cfg(file)
    render.info(f"{file}: OK")


@config_app.command("show")
@_handled
def config_show(file: Annotated[Path | None, typer.Argument(help="YAML config file (default: built-in defaults).")] = None) -> None:
    """Print the effective configuration (defaults merged with FILE).

    Example: botguard config show my.yaml
    """
    from botguard.config import dump_config

    sys.stdout.write(dump_config(_cfg(file)))


# --------------------------------------------------------------------------- ranges
@ranges_app.command("update")
@_handled
def ranges_update(
    from_dir: Annotated[Path | None, typer.Option("--from", help="Import from a local folder instead of downloading.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where to store the lists.")] = None,
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless a source failed (for cron).")] = False,
) -> None:
    """Download (or import with --from DIR) crawler and cloud provider IP ranges.

    A source that fails keeps its previous copy and is reported on stderr; the exit code is 1
    when a download or file failed and nothing at all was updated.

    Example: botguard ranges update --from ./mirror
    """
    from botguard.cli import render
    from botguard.ranges import update_ranges

    cfg = _cfg(config)
    statuses = update_ranges(cfg, from_dir=from_dir, data_dir=data_dir)
    if not quiet:
        render.table("Ranges", ["source", "kind", "status", "networks", "origin"],
                     [[s.name, s.kind, s.status, s.count, s.origin] for s in statuses])
    failed = [s for s in statuses if s.status == "failed"]
    for s in failed:
        render.warn(f"ranges {s.name}: {s.message}")
    if failed and not any(s.status == "updated" for s in statuses):
        render.error("no range list was updated", "check the network (or --from DIR); the previous copies are kept")
        raise typer.Exit(1)


def _age(age: Any) -> str | None:
    """'3 days', '5 hours', 'just now': how old a list is, at a glance."""
    if age is None:
        return None
    seconds = int(age.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "just now"


@ranges_app.command("list")
@_handled
def ranges_list(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where the lists are stored.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Show which range lists are loaded and how old they are.

    Example: botguard ranges list
    """
    from botguard.cli import render
    from botguard.ranges import list_ranges

    cfg = _cfg(config)
    statuses = list_ranges(cfg, data_dir=data_dir)
    render.table("Ranges", ["source", "kind", "networks", "fetched", "age"],
                 [[s.name, s.kind, s.count, f"{s.fetched_at:%Y-%m-%d %H:%M} UTC" if s.fetched_at else None, _age(s.age)]
                  for s in statuses])
    if not any(s.count for s in statuses):
        render.info("no ranges loaded: run `botguard ranges update` (or `--from DIR` offline)")


# --------------------------------------------------------------------------- export
@app.command()
@_handled
def export(
    format: Annotated[str, typer.Option("--format", "-f", help="plain, cidr, nginx-deny, nginx-geo, apache, haproxy, ipset, nftables, iptables, ip6tables, aws-waf, cloudflare, csv, json")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (atomically).")],
    from_dir: Annotated[Path | None, typer.Option("--from", help="An analyze output directory.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="A state database (active, unexpired entries).")] = None,
    max_entries: Annotated[int | None, typer.Option("--max-entries", help="Keep at most N entries (highest priority first).")] = None,
    diff: Annotated[Path | None, typer.Option("--diff", help="Compare with a previous plain/cidr list: write only changes.")] = None,
    changes_only: Annotated[bool, typer.Option("--changes-only", help="With --diff PREVIOUS: write only the entries added since PREVIOUS (removed ones to OUTPUT.removed).")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Time for expiry (ISO 8601; default: end of the analysed data).")] = None,
) -> None:
    """Export the blocklist in a WAF or firewall format.

    Example: botguard export --from botguard-out --format nftables --output /etc/nftables.d/botguard.nft
    """
    from botguard.cli import render
    from botguard.pipeline import export_entries

    when = datetime.fromisoformat(as_of) if as_of else None
    res = export_entries(format, output, from_dir=from_dir, state_path=state, max_entries=max_entries,
                         diff=diff, changes_only=changes_only, as_of=when)
    render.info(res.message)


# --------------------------------------------------------------------------- allow / block
StateArg = Annotated[Path, typer.Option("--state", help="State database.")]


@allow_app.command("add")
@_handled
def allow_add(cidr: str, state: StateArg, ttl: Annotated[str | None, typer.Option("--ttl", help="e.g. 7d; default: forever")] = None,
              note: Annotated[str | None, typer.Option("--note")] = None) -> None:
    """Allow an address or network (never blocked). Example: botguard allow add 203.0.113.0/24 --state s.db --note office"""
    from botguard.pipeline import manual_entry

    manual_entry("allow", "add", cidr, state, ttl=ttl, note=note)


@allow_app.command("remove")
@_handled
def allow_remove(cidr: str, state: StateArg) -> None:
    """Remove a manual allow entry. Example: botguard allow remove 203.0.113.0/24 --state s.db"""
    from botguard.pipeline import manual_entry

    manual_entry("allow", "remove", cidr, state)


@allow_app.command("list")
@_handled
def allow_list(state: StateArg) -> None:
    """List manual allow entries. Example: botguard allow list --state s.db"""
    from botguard.cli import render
    from botguard.pipeline import manual_entry

    rows = manual_entry("allow", "list", None, state)
    if rows is not None:
        render.table("allow entries", rows.columns, [list(r) for r in rows.iter_rows()])


@block_app.command("add")
@_handled
def block_add(cidr: str, state: StateArg, ttl: Annotated[str | None, typer.Option("--ttl", help="e.g. 24h; default: until removed")] = None,
              note: Annotated[str | None, typer.Option("--note")] = None,
              force: Annotated[bool, typer.Option("--force", help="Allow a network wider than /16 (IPv4) or /32 (IPv6).")] = False) -> None:
    """Block an address or network by hand. Example: botguard block add 198.51.100.9 --state s.db --ttl 24h"""
    from botguard.pipeline import manual_entry

    manual_entry("block", "add", cidr, state, ttl=ttl, note=note, force=force)


@block_app.command("remove")
@_handled
def block_remove(cidr: str, state: StateArg) -> None:
    """Remove a manual block entry. Example: botguard block remove 198.51.100.9 --state s.db"""
    from botguard.pipeline import manual_entry

    manual_entry("block", "remove", cidr, state)


@block_app.command("list")
@_handled
def block_list(state: StateArg) -> None:
    """List manual block entries. Example: botguard block list --state s.db"""
    from botguard.cli import render
    from botguard.pipeline import manual_entry

    rows = manual_entry("block", "list", None, state)
    if rows is not None:
        render.table("block entries", rows.columns, [list(r) for r in rows.iter_rows()])


def main() -> None:
    """The console script: the command, then a quick exit.

    Once a command has returned, the interpreter's own teardown (freeing every module, the
    frames and Polars' buffers one object at a time) took 0.1-0.15 s of every run: a tenth
    of a cron run's budget, and nothing is written then. So after the exit handlers have run
    and the output is flushed, the process ends with ``os._exit``. It falls back to the
    normal exit while a child process or another thread is still alive (their clean-up is
    the interpreter's), and a command that raised still ends the normal way, with its
    traceback."""
    try:
        app()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    _quick_exit(code)


def _quick_exit(code: Any) -> None:
    import atexit
    import threading

    if isinstance(code, bool) or not isinstance(code, int | None):
        sys.exit(code)  # a message: printed the usual way
    status = code or 0
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    children = sys.modules.get("multiprocessing")
    if (
        run_handlers is None
        or threading.active_count() > 1
        or (children is not None and children.active_children())
    ):
        sys.exit(status)
    run_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError, OSError):
        sys.exit(status)  # the interpreter's own handling of a closed pipe
    os._exit(status)
