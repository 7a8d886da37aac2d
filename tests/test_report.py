"""The HTML report: hostile log text stays text, the file is self-contained and byte-stable,
and a real browser renders it without console errors."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from botguard.schema import DECISIONS_SCHEMA
from botguard.sinks.report import (
    ACTION_COLOURS,
    MAX_BUCKETS,
    TOP_OFFENDERS,
    render_report,
    write_report,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TIMELINE_SCHEMA = {"bucket": pl.Datetime("us", "UTC"), "action": pl.String(), "requests": pl.Int64()}
SECTIONS = ("overview", "traffic", "scores", "offenders", "campaigns", "crawlers", "blocklist", "parsing", "warnings")

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = [
    SCRIPT,
    IMG,
    "'><svg onload=alert(1)>",
    '<img src="http://evil.example/x.png">',
    "</style><script>alert(2)</script>",
    "</title></svg><iframe srcdoc=x>",
    "javascript:alert(1)",
    "evil\u202egnp.exe\x00\x1b[31m",
]


def decision(i: int, action: str, score: float, *, ua: str = "Mozilla/5.0", reasons: list[str] | None = None,
             client: str | None = None, **extra: Any) -> dict[str, Any]:
    ip = f"192.0.2.{i % 250}"
    return {
        "client": client or ip, "ip": ip, "action": action, "score": score,
        "reasons": reasons if reasons is not None else [f"reason {i}"], "kind": "scraper" if action != "allow" else "human",
        "requests": 100 - i, "sessions": 1 + i % 3, "first_seen": T0 + timedelta(minutes=i),
        "last_seen": T0 + timedelta(hours=3, minutes=i), "user_agent": ua, "verified_crawler": None, "campaign": None,
        **extra,
    }


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=DECISIONS_SCHEMA).sort("score", descending=True)


def hostile_decisions() -> pl.DataFrame:
    rows = [
        decision(i, action, 0.99 - i / 20, ua=HOSTILE[i % len(HOSTILE)], reasons=[HOSTILE[(i + 1) % len(HOSTILE)], f"plain {i}"],
                 client=HOSTILE[(i + 2) % len(HOSTILE)] + f"|{i}")
        for i, action in enumerate(["block", "block", "challenge", "challenge", "monitor", "allow", "allow", "block"])
    ]
    rows[0]["campaign"] = SCRIPT
    rows[5]["verified_crawler"] = IMG
    return frame(rows)


def timeline(hours: int = 30, actions: tuple[str, ...] = ("block", "challenge", "monitor", "allow")) -> pl.DataFrame:
    rows = [
        {"bucket": T0 + timedelta(hours=h), "action": a, "requests": (h * 37 + k * 101) % 400 + 20 * (k + 1)}
        for h in range(hours) for k, a in enumerate(actions) if h % 7 != 3  # hour 3, 10, ... have no traffic
    ]
    return pl.DataFrame(rows, schema=TIMELINE_SCHEMA)


def hostile_summary() -> dict[str, Any]:
    return {
        "generator": "botguard 0.1.0", "config_hash": IMG, "data_from": "2024-05-01T00:00:00+00:00", "data_to": SCRIPT,
        "clients": 8, "actions": {"block": 3, "challenge": 2, "monitor": 1, "allow": 2},
        "kinds": {"scraper": 6, SCRIPT: 1}, "reasons": {SCRIPT: 3, IMG: 2, "N product pages": 1},
        "score_histogram": [2, 0, 0, 1, 0, 0, 1, 1, 1, 2],
        "campaigns": [{"id": SCRIPT, "members": 3, "overlap": 0.8, "requests": 500, "user_agent": IMG}],
        "verified_crawlers": {IMG: 1, "googlebot": 4},
        "blocklist": {"written": False, "refused": IMG + " would block 40% of traffic", "entries": 3},
        "parse": {"format": "combined", "lines": 1000, "parsed": 990, "rejected": 10, "rejected_by_reason": {SCRIPT: 7, "bad status": 3},
                  "invalid_utf8_lines": 2, "first_ts": "2024-05-01T00:00:00+00:00", "last_ts": "2024-05-02T05:00:00+00:00",
                  "sources": ["/var/log/" + IMG], "problems": [SCRIPT + ": gzip truncated"]},
        "sessions": 12, "warnings": [SCRIPT, "network.asn_db is not set"], "timings_s": {"total_s": 1.25},
    }


class Markup(HTMLParser):
    """Every real element and attribute the browser would build from the file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def markup(text: str) -> Markup:
    m = Markup()
    m.feed(text)
    m.close()
    return m


def assert_inert(text: str) -> None:
    """No script, no event handler, nothing loaded from anywhere."""
    assert not re.search(r"<script", text, re.I)
    assert not re.search(r"<[^>]*\son\w+\s*=", text, re.I), "event handler inside a tag"
    assert not re.search(r"""(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"url\(|@import", text, re.I)
    tags = markup(text).tags
    names = {t for t, _ in tags}
    assert not names & {"script", "img", "iframe", "object", "embed", "link", "base", "form", "image", "use"}, names
    for tag, attrs in tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name not in {"src", "srcdoc", "srcset"}, (tag, name)
            if name == "href":
                assert value and value.startswith("#"), (tag, value)


def test_hostile_text_is_escaped_not_markup() -> None:
    text = render_report(decisions=hostile_decisions(), timeline=timeline(), summary=hostile_summary())
    assert_inert(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    # Bidi overrides and control characters are shown, not obeyed.
    assert "\u202e" not in text and "\x00" not in text and "\x1b" not in text
    assert "\\u202e" in text
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\';' in text
    # Exactly the one style element of our own.
    assert [t for t, _ in markup(text).tags].count("style") == 1


def test_every_section_is_present_with_charts() -> None:
    text = render_report(decisions=hostile_decisions(), timeline=timeline(), summary=hostile_summary())
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    tags = [t for t, _ in markup(text).tags]
    assert tags.count("svg") >= 5  # two share bars, traffic, histogram, kinds, reasons
    assert "Refused" in text and "would block 40% of traffic" in text
    assert "googlebot" in text and "bad status" in text and "network.asn_db is not set" in text


def test_offenders_are_the_top_blocked_and_challenged_only() -> None:
    rows = [decision(i, "block" if i % 2 else "challenge", 1 - i / 1000) for i in range(200)]
    rows += [decision(500 + i, "allow", 0.999, client=f"allowed-{i}") for i in range(5)]
    rows += [decision(700, "monitor", 0.9999, client="monitored-0")]
    text = render_report(decisions=frame(rows), timeline=timeline(), summary={})
    part = text.split('<section id="offenders">')[1].split("</section>")[0]
    assert part.count("<tr>") == TOP_OFFENDERS + 1  # plus the header row
    assert "allowed-" not in part and "monitored-0" not in part
    assert f"top {TOP_OFFENDERS} of 200" in part


def test_empty_inputs_still_make_a_valid_page() -> None:
    empty = pl.DataFrame(schema=DECISIONS_SCHEMA)
    for summary in ({}, {"actions": "bogus", "parse": 3, "campaigns": [1, None], "score_histogram": [1, 2], "blocklist": None,
                         "warnings": "not a list", "kinds": {"x": "y"}, "clients": float("nan")}):
        text = render_report(decisions=empty, timeline=pl.DataFrame(schema=TIMELINE_SCHEMA), summary=summary)
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        for anchor in SECTIONS:
            assert f'<section id="{anchor}">' in text
        assert "No traffic in the analysed window." in text
        assert "No blocked or challenged clients." in text
        assert_inert(text)


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    summary = hostile_summary()
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    write_report(a, decisions=hostile_decisions(), timeline=timeline(), summary=summary)
    # Same content, different dict and row order: still the same bytes.
    shuffled = {k: (dict(reversed(v.items())) if isinstance(v, dict) else v) for k, v in reversed(summary.items())}
    write_report(b, decisions=hostile_decisions(), timeline=timeline().reverse(), summary=shuffled)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]  # no temp files left behind


def test_timeline_fills_gaps_and_merges_long_ranges() -> None:
    short = render_report(decisions=hostile_decisions(), timeline=timeline(hours=30), summary={})
    assert short.count('class="hover"') == 30  # hours with no traffic still get a column
    long_tl = timeline(hours=24 * 120)
    text = render_report(decisions=hostile_decisions(), timeline=long_tl, summary={})
    assert 0 < text.count('class="hover"') <= MAX_BUCKETS
    assert f"{int(long_tl['requests'].sum()):,} requests" in text


def test_actions_outside_the_known_four_are_shown() -> None:
    tl = pl.concat([timeline(hours=5), pl.DataFrame([{"bucket": T0, "action": None, "requests": 7}], schema=TIMELINE_SCHEMA)])
    text = render_report(decisions=hostile_decisions(), timeline=tl, summary={})
    assert "unscored" in text


def test_a_hundred_thousand_decisions_is_fast(tmp_path: Path) -> None:
    n = 100_000
    actions = ["block", "challenge", "monitor", "allow"]
    decisions = pl.DataFrame({
        "client": [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(n)],
        "action": [actions[i % 7 % 4] for i in range(n)],
        "score": [(i * 7919 % n) / n for i in range(n)],
        "reasons": [[f"reason {i % 40} on {i % 900} requests", "second", "third", "fourth"] for i in range(n)],
        "requests": [1 + i % 5000 for i in range(n)],
        "first_seen": [T0] * n, "last_seen": [T0 + timedelta(days=30)] * n,
        "user_agent": [f"agent {i % 999}" for i in range(n)],
    }).pipe(lambda df: df.with_columns(pl.col("client").alias("ip"))).sort("score", descending=True)
    start = time.perf_counter()
    write_report(tmp_path / "report.html", decisions=decisions, timeline=timeline(hours=24 * 30), summary={})
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{elapsed:.2f}s"
    assert (tmp_path / "report.html").stat().st_size < 2_000_000


# --------------------------------------------------------------------------- real browser
def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if not found:
        pytest.skip("chromium not installed (apt-get install chromium) — browser rendering not checked")
    return found


def run_chromium(binary: str, tmp: Path, page: Path, *action: str) -> subprocess.CompletedProcess[str]:
    args = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *action, page.as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def read_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit non-interlaced PNG with the stdlib: (width, height, rows, bytes per pixel)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, (depth, interlace)
            bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + (((line[i - bpp] if i >= bpp else 0) + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def near(pixel: tuple[int, ...], hex_colour: str, tolerance: int = 40) -> bool:
    want = (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))
    return all(abs(p - w) <= tolerance for p, w in zip(pixel[:3], want, strict=True))


@pytest.fixture
def browser_page(tmp_path: Path) -> tuple[str, Path]:
    binary = chromium()
    page = tmp_path / "report.html"
    write_report(page, decisions=hostile_decisions(), timeline=timeline(hours=100), summary=hostile_summary())
    return binary, page


def test_browser_renders_charts_in_the_dom(browser_page: tuple[str, Path], tmp_path: Path) -> None:
    binary, page = browser_page
    result = run_chromium(binary, tmp_path, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_errors(result.stderr) == []
    dom = result.stdout
    tags = markup(dom).tags
    names = [t for t, _ in tags]
    assert names.count("svg") >= 5 and "polygon" in names and names.count("rect") > 100
    assert not {"script", "img", "iframe"} & set(names)  # hostile strings stayed text after parsing
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom


def test_browser_screenshot_shows_coloured_charts(browser_page: tuple[str, Path], tmp_path: Path) -> None:
    binary, page = browser_page
    shot = tmp_path / "shot.png"
    result = run_chromium(binary, tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_errors(result.stderr) == []
    assert shot.exists() and shot.stat().st_size > 20_000
    width, height, rows, bpp = read_png(shot.read_bytes())
    assert (width, height) == (1280, 2000)
    # Sample every 4th pixel of every 4th row: enough to see charts, quick in pure Python.
    pixels = [tuple(row[x : x + bpp]) for row in rows[::4] for x in range(0, width * bpp, 4 * bpp)]
    counts = Counter(pixels)
    _, n_background = counts.most_common(1)[0]
    assert len(pixels) - n_background > len(pixels) // 4, "page looks blank"
    assert len(counts) > 100
    for action, colour in ACTION_COLOURS.items():
        assert sum(n for p, n in counts.items() if near(p, colour)) > 200, f"no {action} colour on screen: charts did not render"
