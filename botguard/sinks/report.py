"""The HTML report: one self-contained file an analyst can read and mail to a manager.

Everything that came from the logs (agents, paths, reasons, client keys, even file names) is
hostile text. Every value goes through :func:`_t` before it touches markup, attributes are always
double-quoted, and there is no script at all. A Content-Security-Policy meta tag forbids scripts
and every network fetch, a second fence should an escape ever be missed.

Charts are inline SVG drawn here; no fonts, images or libraries are loaded. Output depends only
on the inputs (no wall clock, dict order made explicit), so the same run gives the same bytes.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from botguard.schema import ACTIONS
from botguard.sinks.atomic import atomic_write

ACTION_COLOURS = {
    "block": "#d93025",
    "challenge": "#e8a100",
    "monitor": "#1a73e8",
    "allow": "#1e8e3e",
}
OTHER_COLOUR = "#9aa0a6"
TOP_OFFENDERS = 50
MAX_TABLE_ROWS = 100
MAX_TEXT = 300
#: More hourly buckets than this are merged into coarser ones so the chart stays legible.
MAX_BUCKETS = 800

# Controls, bidi overrides and zero-width characters can disguise what an agent string says
# (or reorder the text around it); show them as visible escapes instead.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def write_report(
    path: Path, *, decisions: pl.DataFrame, timeline: pl.DataFrame, summary: dict[str, Any]
) -> None:
    """Render the report and replace ``path`` with it atomically."""
    text = render_report(decisions=decisions, timeline=timeline, summary=summary)
    atomic_write(Path(path), text.encode("utf-8", "replace"))


def render_report(
    *, decisions: pl.DataFrame, timeline: pl.DataFrame, summary: Mapping[str, Any]
) -> str:
    summary = summary if isinstance(summary, Mapping) else {}
    sections = [
        ("overview", "Overview", _overview(decisions, summary)),
        ("traffic", "Traffic over time", _traffic(timeline)),
        ("scores", "Scores and reasons", _scores_and_reasons(decisions, summary)),
        ("offenders", "Top offenders", _offenders(decisions)),
        ("campaigns", "Campaigns", _campaigns(summary.get("campaigns"))),
        ("crawlers", "Verified crawlers", _crawlers(decisions, summary.get("verified_crawlers"))),
        ("blocklist", "Blocklist", _blocklist(summary.get("blocklist"))),
        ("parsing", "Parse statistics", _parsing(summary.get("parse"))),
        ("warnings", "Warnings", _warnings(summary.get("warnings"))),
    ]
    nav = "".join(f'<a href="#{a}">{_t(title)}</a>' for a, title, _ in sections)
    body = "".join(
        f'<section id="{a}"><h2>{_t(title)}</h2>{content}</section>'
        for a, title, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>botguard report {_t(_when(summary.get('data_from'), short=True))}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"{_header(summary, decisions)}<nav>{nav}</nav><main>{body}</main>{_footer(summary)}"
        "</body></html>\n"
    )


# --------------------------------------------------------------------------- text helpers
def _t(value: Any, limit: int = MAX_TEXT) -> str:
    """Any value as safe HTML text or attribute content (truncated, invisibles made visible)."""
    s = "" if value is None else str(value)
    if len(s) > limit:
        s = s[:limit] + "…"
    s = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    return html.escape(s, quote=True)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _n(value: Any) -> str:
    v = _int(value)
    return "—" if v is None else f"{v:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def _when(value: Any, short: bool = False) -> str:
    if value is None or value == "":
        return "—"
    ts: datetime | None = value if isinstance(value, datetime) else None
    if ts is None and isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if ts is None:
        return str(value)
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S UTC")


def _f(x: float) -> str:
    """An SVG coordinate: short, and never ``-0.0``."""
    return f"{x + 0.0:.1f}"


def _colour(action: Any) -> str:
    return ACTION_COLOURS.get(str(action), OTHER_COLOUR)


def _badge(action: Any) -> str:
    cls = action if action in ACTION_COLOURS else "other"
    return f'<span class="badge {cls}">{_t(action if action is not None else "unscored")}</span>'


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Iterable[int] = (),
    cls: str = "",
) -> str:
    """``rows`` hold already-escaped cell HTML; ``numeric`` columns are right-aligned."""
    num = set(numeric)
    head = "".join(
        f"<th{' class=num' if i in num else ''}>{_t(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_t(text)}</p>'


def _items(value: Any) -> list[tuple[str, int]]:
    """A {name: count} mapping as (name, count) pairs, largest first, ties by name."""
    if not isinstance(value, Mapping):
        return []
    pairs = [(str(k), n) for k, v in value.items() if (n := _int(v)) is not None]
    return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))


# --------------------------------------------------------------------------- sections
def _header(summary: Mapping[str, Any], decisions: pl.DataFrame) -> str:
    start, end = summary.get("data_from"), summary.get("data_to")
    if (
        start is None
        and end is None
        and len(decisions)
        and {"first_seen", "last_seen"} <= set(decisions.columns)
    ):
        start, end = decisions["first_seen"].min(), decisions["last_seen"].max()
    meta = [
        ("Data", f"{_t(_when(start))} → {_t(_when(end))}"),
        ("Generator", _t(summary.get("generator") or "botguard")),
        ("Config", f"<code>{_t(summary.get('config_hash') or '—')}</code>"),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in meta)
    return f'<header><div class="wrap"><h1>botguard <span>bot &amp; scraper report</span></h1><dl class="meta">{dl}</dl></div></header>'


def _action_counts(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> dict[str, int]:
    given = summary.get("actions")
    if isinstance(given, Mapping):
        counts = {str(a): n for a, v in given.items() if (n := _int(v)) is not None}
    elif "action" in decisions.columns:
        counts = {
            str(a or "unscored"): int(n) for a, n in decisions.group_by("action").len().iter_rows()
        }
    else:
        counts = {}
    ordered = {a: counts.get(a, 0) for a in ACTIONS}
    ordered.update(sorted((a, n) for a, n in counts.items() if a not in ACTION_COLOURS))
    return ordered


def _requests_by_action(decisions: pl.DataFrame) -> dict[str, int]:
    if decisions.is_empty() or not {"action", "requests"} <= set(decisions.columns):
        return {}
    agg = decisions.group_by("action").agg(pl.col("requests").sum())
    return {str(a or "unscored"): int(n or 0) for a, n in agg.iter_rows()}


def _overview(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> str:
    counts = _action_counts(decisions, summary)
    reqs = _requests_by_action(decisions)
    clients = _int(summary.get("clients"))
    clients = sum(counts.values()) if clients is None else clients
    total_req = sum(reqs.values())
    sessions = summary.get("sessions")
    if _int(sessions) is None and "sessions" in decisions.columns:
        sessions = decisions["sessions"].sum()
    cards = [
        f'<div class="card"><div class="label">Clients</div><div class="value">{_n(clients)}</div>'
        f'<div class="sub">{_n(sessions)} sessions · {_n(total_req) if reqs else "—"} requests</div></div>'
    ]
    for action, n in counts.items():
        r = reqs.get(action, 0)
        cards.append(
            f'<div class="card {_t(action) if action in ACTION_COLOURS else "other"}"><div class="label">{_t(action)}</div>'
            f'<div class="value">{_n(n)}</div><div class="sub">{_pct(n, clients)} of clients'
            f"{f' · {_pct(r, total_req)} of requests' if reqs else ''}</div></div>"
        )
    bars = _share_bar("Clients", counts) + (_share_bar("Requests", reqs) if reqs else "")
    return f'<div class="cards">{"".join(cards)}</div>{bars}{_legend(counts)}{_status(summary)}'


def _status(summary: Mapping[str, Any]) -> str:
    """One line a manager reads first: did a blocklist go out, is anything worth a look."""
    items = []
    bl = summary.get("blocklist")
    if isinstance(bl, Mapping) and bl.get("written"):
        items.append(f'<li class="ok">Blocklist written: {_n(bl.get("entries"))} entries</li>')
    elif isinstance(bl, Mapping):
        items.append(
            '<li class="bad"><a href="#blocklist">Blocklist refused</a>: the previous list stays in force</li>'
        )
    warnings = summary.get("warnings")
    if isinstance(warnings, list) and warnings:
        items.append(
            f'<li class="warn"><a href="#warnings">{len(warnings):,} warning{"s" if len(warnings) != 1 else ""}</a></li>'
        )
    parse = summary.get("parse")
    rejected = _int(parse.get("rejected")) if isinstance(parse, Mapping) else None
    if rejected:
        items.append(f'<li class="warn"><a href="#parsing">{rejected:,} lines rejected</a></li>')
    return f'<ul class="status">{"".join(items)}</ul>' if items else ""


def _share_bar(label: str, counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    order = [a for a in ACTIONS if counts.get(a)] + sorted(
        a for a in counts if a not in ACTION_COLOURS and counts[a]
    )
    x, parts = 0.0, []
    for a in order:
        w = 1000 * counts[a] / total
        parts.append(
            f'<rect x="{_f(x)}" y="0" width="{_f(w)}" height="18" fill="{_colour(a)}"><title>{_t(a)}: {counts[a]:,} ({_pct(counts[a], total)})</title></rect>'
        )
        x += w
    return (
        f'<div class="share"><span>{_t(label)}</span><svg class="bar" viewBox="0 0 1000 18" preserveAspectRatio="none" '
        f'role="img" aria-label="{_t(label)} by action">{"".join(parts)}</svg></div>'
    )


def _legend(actions: Iterable[str]) -> str:
    keys = "".join(f'<span><i style="background:{_colour(a)}"></i>{_t(a)}</span>' for a in actions)
    return f'<div class="legend">{keys}</div>'


def _traffic(timeline: pl.DataFrame) -> str:
    if timeline.is_empty() or not {"bucket", "action", "requests"} <= set(timeline.columns):
        return _empty("No traffic in the analysed window.")
    bucket = pl.col("bucket")
    dtype = timeline.schema["bucket"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        bucket = bucket.dt.replace_time_zone("UTC")
    tl = timeline.select(
        bucket.cast(pl.Datetime("us", "UTC")),
        pl.col("action").cast(pl.String).fill_null("unscored"),
        pl.col("requests").cast(pl.Int64).fill_null(0),
    ).drop_nulls("bucket")
    if tl.is_empty():
        return _empty("No traffic in the analysed window.")
    lo, hi = tl["bucket"].min(), tl["bucket"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    hours = int((hi - lo).total_seconds() // 3600) + 1
    step_h = next(
        (h for h in (1, 2, 3, 6, 12, 24, 48, 168) if hours / h <= MAX_BUCKETS),
        24 * max(1, math.ceil(hours / MAX_BUCKETS / 24)),
    )
    every = f"{step_h}h"
    tl = (
        tl.with_columns(pl.col("bucket").dt.truncate(every))
        .group_by("bucket", "action")
        .agg(pl.col("requests").sum())
    )
    start = tl["bucket"].min()
    assert isinstance(start, datetime)
    n = int((hi - start).total_seconds() // (3600 * step_h)) + 1
    actions = [a for a in ACTIONS if a in set(tl["action"])] + sorted(
        set(tl["action"]) - set(ACTIONS)
    )
    # Pivot by hand into dense per-action lists so gaps show as zero traffic.
    series = {a: [0] * n for a in actions}
    for b, a, r in tl.iter_rows():
        series[a][int((b - start).total_seconds() // (3600 * step_h))] += int(r)
    unit = "hour" if step_h == 1 else ("day" if step_h == 24 else f"{step_h} h")
    total = sum(sum(v) for v in series.values())
    note = f'<p class="note">Requests per {_t(unit)} by the action taken on the client that sent them · {total:,} requests in {n:,} buckets. Hover a column for its numbers.</p>'
    return note + _timeline_svg(series, start, timedelta(hours=step_h)) + _legend(actions)


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = max(
        1.0, next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    )  # counts: whole-number ticks
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _fmt_tick(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _axes(ticks: list[float], x0: float, x1: float, y: Any) -> str:
    out = []
    for v in ticks:
        yy = y(v)
        out.append(
            f'<line x1="{_f(x0)}" x2="{_f(x1)}" y1="{_f(yy)}" y2="{_f(yy)}" class="grid"/>'
            f'<text x="{_f(x0 - 8)}" y="{_f(yy + 4)}" class="ytick">{_fmt_tick(v)}</text>'
        )
    return "".join(out)


def _timeline_svg(series: Mapping[str, list[int]], start: datetime, step: timedelta) -> str:
    n = len(next(iter(series.values())))
    W, H, L, R, T, B = 1000, 320, 60, 12, 12, 36
    pw, ph = W - L - R, H - T - B
    stacks = [sum(col) for col in zip(*series.values(), strict=True)]
    ticks = _nice_ticks(max(stacks))
    top = ticks[-1] or 1

    def y(v: float) -> float:
        return T + ph - ph * v / top

    bw = pw / n
    parts = [_axes(ticks, L, W - R, y)]
    base = [0] * n
    for a, vals in series.items():
        fill = _colour(a)
        upper = [b + v for b, v in zip(base, vals, strict=True)]
        if n <= 72:  # few buckets: stacked columns read better than an area
            parts.extend(
                f'<rect x="{_f(L + i * bw + bw * 0.1)}" y="{_f(y(u))}" width="{_f(bw * 0.8)}" height="{_f(y(b) - y(u))}" fill="{fill}"/>'
                for i, (b, u) in enumerate(zip(base, upper, strict=True))
                if u > b
            )
        else:
            xs = [L + (i + 0.5) * bw for i in range(n)]
            top_pts = " ".join(f"{_f(x)},{_f(y(u))}" for x, u in zip(xs, upper, strict=True))
            bot_pts = " ".join(
                f"{_f(x)},{_f(y(b))}" for x, b in zip(reversed(xs), reversed(base), strict=True)
            )
            parts.append(
                f'<polygon points="{top_pts} {bot_pts}" fill="{fill}" fill-opacity="0.85" stroke="{fill}" stroke-width="0.6"/>'
            )
        base = upper
    # X labels: at most about eight, on round times (midnight, noon, ...), UTC.
    step_h = max(1, int(step.total_seconds() // 3600))
    tick_h = next(
        (
            h
            for h in (1, 2, 3, 6, 12, 24, 48, 168, 336, 672)
            if h % step_h == 0 and n * step_h / h <= 8
        ),
        24 * 28,
    )
    fmt = "%m-%d %H:%M" if tick_h < 24 else "%Y-%m-%d"
    for i in range(n):
        when = start + step * i
        # Weekly and longer ticks fall on Mondays (the epoch was a Thursday).
        if (int(when.timestamp()) // 3600 - (96 if tick_h >= 168 else 0)) % tick_h:
            continue
        x = L + (i + 0.5) * bw
        if x > W - R - 30:
            continue
        parts.append(
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(T + ph)}" y2="{_f(T + ph + 4)}" class="axis"/>'
            f'<text x="{_f(x)}" y="{_f(H - 14)}" class="xtick">{when.strftime(fmt)}</text>'
        )
    parts.append(f'<line x1="{L}" x2="{W - R}" y1="{_f(T + ph)}" y2="{_f(T + ph)}" class="axis"/>')
    # Hover targets: a transparent column per bucket whose tooltip lists the split.
    for i in range(n):
        label = (start + step * i).strftime("%Y-%m-%d %H:%M")
        detail = "&#10;".join(f"{_t(a)}: {vals[i]:,}" for a, vals in series.items() if vals[i])
        parts.append(
            f'<rect x="{_f(L + i * bw)}" y="{T}" width="{_f(bw)}" height="{ph}" class="hover"><title>{label} UTC · {stacks[i]:,} requests&#10;{detail}</title></rect>'
        )
    return f'<div class="scroll"><svg class="chart wide" viewBox="0 0 {W} {H}" role="img" aria-label="Requests over time by action">{"".join(parts)}</svg></div>'


def _histogram(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> list[int]:
    given = summary.get("score_histogram")
    if isinstance(given, Sequence) and not isinstance(given, str) and len(given) == 10:
        return [max(0, _int(v) or 0) for v in given]
    hist = [0] * 10
    if "score" in decisions.columns and len(decisions):
        deciles = decisions.select(
            (pl.col("score").fill_null(0) * 10).floor().clip(0, 9).cast(pl.Int64).alias("d")
        )
        for d, k in deciles.group_by("d").len().iter_rows():
            hist[int(d)] += int(k)
    return hist


def _blend(a: str, b: str, t: float) -> str:
    ca, cb = (int(a[i : i + 2], 16) for i in (1, 3, 5)), (int(b[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


# Score deciles coloured green through amber to red, the way the actions run.
_SCORE_COLOURS = [
    _blend(ACTION_COLOURS["allow"], ACTION_COLOURS["challenge"], i / 5)
    if i < 5
    else _blend(ACTION_COLOURS["challenge"], ACTION_COLOURS["block"], (i - 5) / 4)
    for i in range(10)
]


def _histogram_svg(hist: list[int]) -> str:
    W, H, L, R, T, B = 480, 260, 52, 10, 12, 40
    pw, ph = W - L - R, H - T - B
    ticks = _nice_ticks(max(hist) * 1.08)  # headroom for the count above the tallest bar
    top = ticks[-1] or 1

    def y(v: float) -> float:
        return T + ph - ph * v / top

    bw = pw / 10
    parts = [_axes(ticks, L, W - R, y)]
    total = sum(hist)
    for i, v in enumerate(hist):
        parts.append(
            f'<rect x="{_f(L + i * bw + 3)}" y="{_f(y(v))}" width="{_f(bw - 6)}" height="{_f(y(0) - y(v))}" fill="{_SCORE_COLOURS[i]}" rx="2">'
            f"<title>score {i / 10:.1f}–{(i + 1) / 10:.1f}: {v:,} clients ({_pct(v, total)})</title></rect>"
        )
        if v:
            parts.append(
                f'<text x="{_f(L + (i + 0.5) * bw)}" y="{_f(y(v) - 4)}" class="xtick">{v:,}</text>'
            )
    for i in range(11):
        x = L + i * bw
        parts.append(f'<text x="{_f(x)}" y="{_f(T + ph + 16)}" class="xtick">{i / 10:.1f}</text>')
    parts.append(
        f'<line x1="{L}" x2="{W - R}" y1="{_f(T + ph)}" y2="{_f(T + ph)}" class="axis"/>'
        f'<text x="{_f(L + pw / 2)}" y="{H - 4}" class="xtick">score</text>'
    )
    return f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="Score distribution">{"".join(parts)}</svg>'


def _reason_counts(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    if isinstance(summary.get("reasons"), Mapping):
        return _items(summary.get("reasons"))
    if decisions.is_empty() or not {"reasons", "action"} <= set(decisions.columns):
        return []
    first = (
        decisions.filter(pl.col("action") != "allow")
        .select(pl.col("reasons").list.first().str.replace_all(r"[\d.,%]+", "N").alias("r"))
        .drop_nulls()
    )
    return sorted(
        ((str(r), int(k)) for r, k in first.group_by("r").len().iter_rows()),
        key=lambda kv: (-kv[1], kv[0]),
    )[:15]


def _kind_counts(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    if isinstance(summary.get("kinds"), Mapping):
        return _items(summary.get("kinds"))
    if decisions.is_empty() or not {"kind", "action"} <= set(decisions.columns):
        return []
    counts = decisions.filter(pl.col("action") != "allow").group_by("kind").len().drop_nulls("kind")
    return sorted(((str(k), int(n)) for k, n in counts.iter_rows()), key=lambda kv: (-kv[1], kv[0]))


def _hbars_svg(
    items: list[tuple[str, int]], label: str, colour: str = "#5f6fd6", width: int = 1000
) -> str:
    # Labels get about half the width; ~6.3 user units per character at 12px.
    W, row, R = width, 24, 56
    L = int(W * 0.5)
    room = int((L - 12) / 6.3)
    H = row * len(items) + 8
    top = max(v for _, v in items) or 1
    total = sum(v for _, v in items)
    parts = []
    for i, (name, v) in enumerate(items):
        y = 4 + i * row
        w = (W - L - R) * v / top
        short = name if len(name) <= room else name[: room - 1] + "…"
        parts.append(
            f"<g><title>{_t(name)}: {v:,} ({_pct(v, total)})</title>"
            f'<text x="{L - 10}" y="{_f(y + row / 2 + 4)}" class="blabel">{_t(short)}</text>'
            f'<rect x="{L}" y="{_f(y + 3)}" width="{_f(max(w, 1))}" height="{row - 6}" fill="{colour}" rx="2"/>'
            f'<text x="{_f(L + w + 6)}" y="{_f(y + row / 2 + 4)}" class="bvalue">{v:,}</text></g>'
        )
    wide = " wide" if W > 600 else ""
    return f'<div class="scroll"><svg class="chart{wide}" viewBox="0 0 {W} {H}" role="img" aria-label="{_t(label)}">{"".join(parts)}</svg></div>'


def _scores_and_reasons(decisions: pl.DataFrame, summary: Mapping[str, Any]) -> str:
    hist = _histogram(decisions, summary)
    kinds = _kind_counts(decisions, summary)
    reasons = _reason_counts(decisions, summary)
    hist_panel = (
        '<div class="panel"><h3>Score distribution</h3><p class="note">Clients per score decile (0 = clearly human, 1 = clearly a bot).</p>'
        + (_histogram_svg(hist) if sum(hist) else _empty("No clients scored."))
        + "</div>"
    )
    kinds_panel = (
        '<div class="panel"><h3>Kinds of flagged clients</h3><p class="note">Flagged clients by their strongest kind of evidence.</p>'
        + (
            _hbars_svg(kinds[:12], "Kinds of flagged clients", "#7b61c9", width=480)
            if kinds
            else _empty("No client was flagged.")
        )
        + "</div>"
    )
    reasons_panel = (
        '<h3>Strongest reason</h3><p class="note">Flagged clients by their strongest reason; numbers are folded to N so alike reasons group together.</p>'
        + (
            _hbars_svg(reasons[:15], "Strongest reason for flagged clients")
            if reasons
            else _empty("No client was flagged.")
        )
    )
    return f'<div class="grid2">{hist_panel}{kinds_panel}</div>{reasons_panel}'


def _offenders(decisions: pl.DataFrame) -> str:
    if decisions.is_empty() or "action" not in decisions.columns:
        return _empty("No blocked or challenged clients.")
    flagged = decisions.filter(pl.col("action").is_in(["block", "challenge"]))
    if flagged.is_empty():
        return _empty("No blocked or challenged clients.")
    keys = [c for c in ("score", "requests", "client") if c in flagged.columns]
    top = flagged.sort(keys, descending=[k != "client" for k in keys], nulls_last=True).head(
        TOP_OFFENDERS
    )
    headers = ["#", "Client", "Action", "Score", "Requests", "Seen (UTC)", "User agent", "Reasons"]
    rows = []
    for i, r in enumerate(top.iter_rows(named=True), 1):
        client = f"<code>{_t(r.get('client'))}</code>"
        if r.get("ip") and r.get("ip") != r.get("client"):
            client += f'<div class="dim">{_t(r.get("ip"))}</div>'
        if r.get("campaign"):
            client += f'<div class="dim">campaign {_t(r.get("campaign"))}</div>'
        rows.append(
            [
                str(i),
                client,
                f'{_badge(r.get("action"))}<div class="dim">{_t(r.get("kind") or "")}</div>',
                _score_cell(r.get("score"), r.get("model_score")),
                f'{_n(r.get("requests"))}<div class="dim">{_n(r.get("sessions"))} sess.</div>',
                f'<span class="nw">{_t(_when(r.get("first_seen"), short=True))}</span>'
                f'<div class="dim nw">→ {_t(_when(r.get("last_seen"), short=True))}</div>',
                f'<span class="ua">{_t(r.get("user_agent") or "(none)")}</span>',
                _reasons_cell(r.get("reasons")),
            ]
        )
    num = {0, 3, 4}
    note = f'<p class="note">Showing the top {len(top):,} of {len(flagged):,} blocked or challenged clients, by score.</p>'
    return note + _table(headers, rows, num, cls="offenders")


def _score_cell(score: Any, model: Any) -> str:
    if not isinstance(score, int | float) or isinstance(score, bool):
        return "—"
    width = max(0.0, min(1.0, float(score))) * 100
    out = f'<span class="score"><b style="width:{width:.0f}%"></b></span>{score:.2f}'
    if isinstance(model, int | float) and not isinstance(model, bool):
        out += f'<div class="dim">model {model:.2f}</div>'
    return out


def _reasons_cell(reasons: Any) -> str:
    if not isinstance(reasons, list) or not reasons:
        return "—"
    shown = "".join(f"<li>{_t(x)}</li>" for x in reasons[:3])
    rest = reasons[3:20]
    more = (
        f"<details><summary>{len(reasons) - 3} more</summary><ul>{''.join(f'<li>{_t(x)}</li>' for x in rest)}</ul></details>"
        if rest
        else ""
    )
    return f'<ul class="reasons">{shown}</ul>{more}'


def _campaigns(campaigns: Any) -> str:
    if not isinstance(campaigns, list) or not campaigns:
        return _empty("No coordinated campaigns detected.")
    valid = [c for c in campaigns if isinstance(c, Mapping)]
    valid.sort(key=lambda c: (-(_int(c.get("requests")) or 0), str(c.get("id"))))
    rows = []
    for c in valid[:MAX_TABLE_ROWS]:
        ov = c.get("overlap")
        rows.append(
            [
                f"<code>{_t(c.get('id'))}</code>",
                _n(c.get("members")),
                f"{ov:.0%}" if isinstance(ov, int | float) and not isinstance(ov, bool) else "—",
                _n(c.get("requests")),
                f'<span class="ua">{_t(c.get("user_agent") or "—")}</span>',
            ]
        )
    groups = "group" if len(valid) == 1 else "groups"
    note = f'<p class="note">{len(valid):,} {groups} of clients acting together (shared paths, agent, timing); largest first.</p>'
    return note + _table(
        ["Campaign", "Members", "Overlap", "Requests", "User agent"], rows, {1, 2, 3}
    )


def _crawlers(decisions: pl.DataFrame, given: Any) -> str:
    items = _items(given)
    if (
        not items
        and not isinstance(given, Mapping)
        and "verified_crawler" in decisions.columns
        and len(decisions)
    ):
        vc = (
            decisions.filter(pl.col("verified_crawler").is_not_null())
            .group_by("verified_crawler")
            .len()
        )
        items = sorted(
            ((str(k), int(v)) for k, v in vc.iter_rows()), key=lambda kv: (-kv[1], kv[0])
        )
    if not items:
        return _empty("No verified crawlers seen.")
    rows = [[_t(name), _n(n)] for name, n in items[:MAX_TABLE_ROWS]]
    note = '<p class="note">Crawlers whose address matched the operator’s published ranges or reverse DNS; they are allowed.</p>'
    return note + _table(["Crawler", "Clients"], rows, {1}, cls="narrow")


def _blocklist(info: Any) -> str:
    if not isinstance(info, Mapping):
        return _empty("No blocklist information.")
    if info.get("written"):
        text = f"<b>Written</b>: {_n(info.get('entries'))} entries to <code>{_t(info.get('path') or '—')}</code>."
        exports = info.get("exports")
        extra = ""
        if isinstance(exports, list) and exports:
            rows = [
                [
                    _t(e.get("format")),
                    f"<code>{_t(e.get('path'))}</code>",
                    "yes" if e.get("written") else "no",
                ]
                for e in exports
                if isinstance(e, Mapping)
            ]
            extra = _table(["Export", "Path", "Written"], rows, cls="narrow")
        return f'<div class="callout ok">{text}</div>{extra}'
    why = info.get("refused") or "not written"
    return (
        f'<div class="callout bad"><b>Refused</b>: {_t(why, 2000)}'
        f'<div class="dim">{_n(info.get("entries"))} entries were not written; the previous list stays in force.</div></div>'
    )


def _parsing(parse: Any) -> str:
    if not isinstance(parse, Mapping):
        return _empty("No parse statistics.")
    lines, parsed, rejected = (
        _int(parse.get("lines")),
        _int(parse.get("parsed")),
        _int(parse.get("rejected")),
    )
    kv = [
        (
            "Format",
            _t(parse.get("format") or "—") + (" (detected)" if parse.get("format_sniffed") else ""),
        ),
        ("Lines read", _n(lines)),
        (
            "Parsed",
            _n(parsed)
            + (
                f' <span class="dim">{_pct(parsed, lines)}</span>'
                if lines and parsed is not None
                else ""
            ),
        ),
        (
            "Rejected",
            _n(rejected)
            + (
                f' <span class="dim">{_pct(rejected, lines)}</span>'
                if lines and rejected is not None
                else ""
            ),
        ),
        ("Invalid UTF-8 lines", _n(parse.get("invalid_utf8_lines"))),
        ("First timestamp", _t(_when(parse.get("first_ts")))),
        ("Last timestamp", _t(_when(parse.get("last_ts")))),
    ]
    out = (
        '<div class="grid2"><div class="panel"><h3>Input</h3>'
        + _table(["", ""], [[_t(k), v] for k, v in kv], {1}, cls="kv")
        + "</div>"
    )
    rejects = _items(parse.get("rejected_by_reason"))
    out += (
        '<div class="panel"><h3>Rejected lines by reason</h3>'
        + (
            _table(["Reason", "Lines"], [[_t(k), _n(v)] for k, v in rejects[:MAX_TABLE_ROWS]], {1})
            if rejects
            else _empty("No rejected lines.")
        )
        + "</div></div>"
    )
    sources = parse.get("sources")
    if isinstance(sources, list) and sources:
        listed = "".join(f"<li><code>{_t(s)}</code></li>" for s in sources[:MAX_TABLE_ROWS])
        more = (
            f"<li>… and {len(sources) - MAX_TABLE_ROWS:,} more</li>"
            if len(sources) > MAX_TABLE_ROWS
            else ""
        )
        out += f'<h3>Sources ({len(sources):,})</h3><ul class="plain">{listed}{more}</ul>'
    problems = parse.get("problems")
    if isinstance(problems, list) and problems:
        out += (
            '<h3>Source problems</h3><ul class="warn">'
            + "".join(f"<li>{_t(p, 1000)}</li>" for p in problems[:MAX_TABLE_ROWS])
            + "</ul>"
        )
    return out


def _warnings(warnings: Any) -> str:
    if not isinstance(warnings, list) or not warnings:
        return _empty("No warnings.")
    return (
        '<ul class="warn">'
        + "".join(f"<li>{_t(w, 1000)}</li>" for w in warnings[:MAX_TABLE_ROWS])
        + "</ul>"
    )


def _footer(summary: Mapping[str, Any]) -> str:
    # Timings are left out on purpose: the same data must give the same bytes.
    return (
        f'<footer><div class="wrap">{_t(summary.get("generator") or "botguard")} · config <code>{_t(summary.get("config_hash") or "—")}</code>'
        "<br>All times are UTC and come from the log data. Text from the logs is shown escaped.</div></footer>"
    )


_CSS = """
:root{--ink:#1f2328;--dim:#59636e;--line:#d8dee4;--bg:#f6f8fa;--card:#fff;--block:#d93025;--challenge:#e8a100;--monitor:#1a73e8;--allow:#1e8e3e;--other:#9aa0a6}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap,nav,main{max-width:1240px;margin:0 auto;padding:0 24px}
header{background:#1f2937;color:#f3f4f6;padding:22px 0 18px}
header h1{margin:0 0 10px;font-size:24px;font-weight:650;letter-spacing:-.01em}
header h1 span{font-weight:400;color:#9ca3af;margin-left:6px}
.meta{display:flex;flex-wrap:wrap;gap:8px 32px;margin:0}
.meta dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#9ca3af}
.meta dd{margin:0;font-variant-numeric:tabular-nums}
.meta code{color:#f3f4f6}
nav{display:flex;flex-wrap:wrap;gap:4px 18px;padding-top:14px;padding-bottom:4px;font-size:14px}
nav a{color:var(--dim);text-decoration:none}
nav a:hover{color:var(--ink);text-decoration:underline}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 22px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 12px;font-weight:650}
h3{font-size:14px;margin:14px 0 6px;font-weight:650}
.panel h3{margin-top:0}
.note,.empty{color:var(--dim);font-size:13px;margin:0 0 10px}
.empty{font-style:italic}
.dim{color:var(--dim);font-size:12px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-bottom:16px}
.card{border:1px solid var(--line);border-left:5px solid #4b5563;border-radius:6px;padding:10px 14px}
.card.block{border-left-color:var(--block)}.card.challenge{border-left-color:var(--challenge)}
.card.monitor{border-left-color:var(--monitor)}.card.allow{border-left-color:var(--allow)}.card.other{border-left-color:var(--other)}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--dim)}
.card .value{font-size:28px;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.2}
.card .sub{font-size:12px;color:var(--dim)}
.share{display:flex;align-items:center;gap:10px;margin:6px 0}
.share span{width:72px;font-size:12px;color:var(--dim);text-align:right}
svg.bar{flex:1;height:18px;border-radius:3px;overflow:hidden}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px;margin-top:8px;padding-left:82px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
#traffic .legend{padding-left:60px}
svg.chart{width:100%;height:auto;display:block}
svg.wide{min-width:640px}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#59636e}
svg .ytick{text-anchor:end}svg .xtick{text-anchor:middle}
svg .blabel{text-anchor:end;fill:#1f2328;font-size:12px}svg .bvalue{font-size:11px}
svg .grid{stroke:#e6e9ed;stroke-width:1}svg .axis{stroke:#8c959f;stroke-width:1}
svg .hover{fill:transparent}svg .hover:hover{fill:rgba(0,0,0,.07)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px 28px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
table.narrow{width:auto;min-width:320px}
th{text-align:left;font-weight:600;color:var(--dim);font-size:12px;border-bottom:2px solid var(--line);padding:6px 8px;white-space:nowrap}
td{border-bottom:1px solid #eaeef2;padding:6px 8px;vertical-align:top}
tbody tr:nth-child(even){background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv thead{display:none}table.kv td:first-child{color:var(--dim)}
.offenders td:nth-child(2){min-width:130px;max-width:230px}
.offenders td:nth-child(3){white-space:nowrap}
.nw{white-space:nowrap}
.ua{display:block;min-width:200px;max-width:320px;font-size:12px;overflow-wrap:anywhere;color:#374151}
.reasons{margin:0;padding-left:16px;min-width:220px;overflow-wrap:anywhere}
.reasons li{margin:0 0 2px}
details summary{cursor:pointer;color:var(--dim);font-size:12px}
details ul{margin:2px 0;padding-left:16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--other)}
.badge.block{background:var(--block)}.badge.challenge{background:var(--challenge);color:#1f2328}
.badge.monitor{background:var(--monitor)}.badge.allow{background:var(--allow)}
.score{display:inline-block;width:44px;height:6px;background:#eaeef2;border-radius:3px;margin-right:6px;vertical-align:middle;overflow:hidden}
.score b{display:block;height:100%;background:var(--block)}
.callout{border-radius:6px;padding:12px 14px;border:1px solid}
.callout.ok{background:#e6f4ea;border-color:#a8dab5}
.callout.bad{background:#fce8e6;border-color:#f4b4ae}
ul.plain{margin:0;padding-left:18px;font-size:13px}
ul.warn{margin:0;padding-left:20px}
ul.warn li{margin:4px 0;overflow-wrap:anywhere}
ul.warn li::marker{color:var(--challenge)}
ul.status{list-style:none;display:flex;flex-wrap:wrap;gap:8px;margin:14px 0 0;padding:0;font-size:13px}
ul.status li{padding:3px 10px;border-radius:12px;border:1px solid}
ul.status .ok{background:#e6f4ea;border-color:#a8dab5}
ul.status .bad{background:#fce8e6;border-color:#f4b4ae}
ul.status .warn{background:#fef7e0;border-color:#f6d889}
ul.status a{color:inherit}
footer{color:var(--dim);font-size:12px;padding:8px 0 28px}
@media (max-width:640px){.wrap,nav,main{padding:0 12px}section{padding:14px}.grid2{grid-template-columns:1fr}.legend{padding-left:0}}
@media print{body{background:#fff}section{break-inside:avoid;border:none;padding:0}nav{display:none}}
"""
