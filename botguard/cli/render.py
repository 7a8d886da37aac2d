"""Terminal rendering: the one module that imports rich."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)


# C0 controls but tab and newline, DEL and C1 controls: an escape sequence in a log line
# (an agent, a path) would otherwise drive the reader's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(value: object, *, newlines: bool = False) -> str:
    """``value`` as text fit for the terminal: control characters shown as ``\\xNN`` and rich
    markup escaped. Everything that quotes a log goes through here."""
    pattern = _CONTROL if newlines else _CONTROL_OR_NEWLINE
    return escape(pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value)))


def set_color(force: bool) -> None:
    global out, err
    if force:
        out = Console(force_terminal=True)
        err = Console(stderr=True, force_terminal=True)


def error(message: str, hint: str | None = None) -> None:
    # Messages quote log lines and config values: never interpret them as markup.
    err.print(f"[bold red]error:[/] {safe(message, newlines=True)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[dim]hint:[/] {safe(hint, newlines=True)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {safe(message, newlines=True)}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(safe(message, newlines=True), highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


@contextmanager
def progress(total: int | None, label: str, enabled: bool) -> Iterator[Any]:
    """A byte progress bar on stderr for long inputs; a no-op callback otherwise."""
    if not enabled or not total or total < 50 * 1024 * 1024 or not err.is_terminal:
        yield lambda n: None
        return
    with Progress(
        TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def parse_summary(stats: dict[str, Any], extra: dict[str, Any]) -> None:
    t = Table(title="Parse summary", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    fmt = stats["format"] + (" (sniffed)" if stats.get("format_sniffed") else "")
    t.add_row("format", safe(fmt))
    t.add_row("lines", f"{stats['lines']:,}")
    t.add_row("parsed", f"{stats['parsed']:,}")
    rej = ", ".join(f"{k}: {v:,}" for k, v in stats["rejected_by_reason"].items()) or "none"
    t.add_row("rejected", f"{stats['rejected']:,} ({rej})")
    by_source = stats.get("rejected_by_source") or {}
    if len(stats.get("sources", [])) > 1 and by_source:
        t.add_row("rejected by file", safe(", ".join(f"{k}: {v:,}" for k, v in list(by_source.items())[:5])))
    if stats.get("invalid_utf8_lines"):
        t.add_row("invalid UTF-8 lines", f"{stats['invalid_utf8_lines']:,} (decoded with replacement)")
    t.add_row("time range", f"{stats['first_ts']} → {stats['last_ts']}")
    if stats.get("never_logged"):
        t.add_row("[yellow]never logged[/]", ", ".join(stats["never_logged"]) + " (empty on every line: not in the format?)")
    for k, v in extra.items():
        if k != "top_user_agents":
            t.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else safe(v))
    for p in stats.get("problems", []):
        t.add_row("[red]problem[/]", safe(p))
    out.print(t)
    if extra.get("top_user_agents"):
        ua = Table(title="Top user agents", title_justify="left")
        ua.add_column("requests", justify="right")
        ua.add_column("user agent", overflow="fold")
        for agent, n in extra["top_user_agents"]:
            ua.add_row(f"{n:,}", safe(agent) if agent else "(empty)")
        out.print(ua)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[("" if v is None else safe(v)) for v in r])
    out.print(t)


ACTION_STYLE = {"block": "bold red", "challenge": "yellow", "monitor": "cyan", "allow": "green"}


def analyze_summary(summary: dict[str, Any], top: list[dict[str, Any]]) -> None:
    counts = summary.get("actions", {})
    inc = summary.get("incremental")
    if inc:
        out.print(
            f"incremental: {inc['new_lines']:,} new lines; clients judged on their traffic since "
            f"{safe(str(inc['judged_from']))}" + (" (a new window began during this run)" if inc["window_closed"] else "")
        )
    t = Table(title="Decisions by action", title_justify="left")
    t.add_column("action")
    t.add_column("clients", justify="right")
    for action in ("block", "challenge", "monitor", "allow"):
        t.add_row(f"[{ACTION_STYLE[action]}]{action}[/]", f"{counts.get(action, 0):,}")
    out.print(t)
    if top:
        o = Table(title="Top offenders", title_justify="left")
        for c in ("client", "action", "score", "requests", "reasons"):
            o.add_column(c, overflow="fold")
        for d in top:
            o.add_row(
                safe(d["client"]), f"[{ACTION_STYLE[d['action']]}]{d['action']}[/]",
                f"{d['score']:.2f}", f"{d['requests']:,}", safe("; ".join(d["reasons"][:3])),
            )
        out.print(o)
    bl = summary.get("blocklist", {})
    if bl:
        if bl.get("written"):
            out.print(f"blocklist: {bl.get('entries', 0):,} entries → {safe(bl.get('path'))}")
        else:
            out.print(f"[bold red]blocklist not written:[/] {safe(bl.get('refused'))}")


def explain(decision: dict[str, Any], features: dict[str, Any], samples: list[str]) -> None:
    action = decision["action"]
    out.print(
        f"[bold]{safe(decision['client'])}[/]  [{ACTION_STYLE[action]}]{action}[/]  "
        f"score {decision['score']:.2f}"
    )
    for k in ("ip", "kind", "user_agent", "verified_crawler", "campaign", "requests", "sessions",
              "first_seen", "last_seen"):
        if decision.get(k) is not None:
            out.print(f"  {k}: {safe(decision[k])}")
    out.print("[bold]reasons[/] (strongest first):")
    for r in decision["reasons"] or ["(none)"]:
        out.print(f"  • {safe(r)}")
    if features:
        t = Table(title="features", title_justify="left", show_header=False)
        t.add_column(style="bold")
        t.add_column()
        for k, v in features.items():
            if v is not None:
                t.add_row(k, f"{v:.4g}" if isinstance(v, float) else safe(v))
        out.print(t)
    if samples:
        out.print("[bold]sample lines[/]:")
        for s in samples:
            out.print("  " + safe(s), highlight=False, soft_wrap=True)
