"""Parsers: inline lines in, exact hits frame out, for every supported format."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from botguard.config import Config, load_config
from botguard.errors import ConfigError
from botguard.ingest import read_hits, sniff
from botguard.parsers import get_parser, known_formats, sniff_candidates
from botguard.parsers.normalize import normalize_ip
from botguard.schema import HITS_SCHEMA, REJECTS_SCHEMA, check
from botguard.sources.files import Chunk

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


def _lines(lines: list[str], source: str = "test.log") -> pl.LazyFrame:
    n = len(lines)
    return pl.LazyFrame(
        {
            "line": lines,
            "line_no": list(range(1, n + 1)),
            "source": [source] * n,
            "default_tz": ["UTC"] * n,
        },
        schema={"line": pl.String, "line_no": pl.Int64, "source": pl.String, "default_tz": pl.String},
    )


def _chunk(lines: list[str], source: str = "test.log") -> Chunk:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    return Chunk(source, 1, data, len(lines))


def parse(fmt: str, lines: list[str], cfg: Config, tz: str = "UTC") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse through the line path and, where the format has one, the bytes (CSV) path too:
    both must give the same frames, so every example here is also a test of the fast path."""
    parser = get_parser(fmt, cfg)
    hits, rejects = parser.parse(_lines(lines), tz)
    assert check(hits, HITS_SCHEMA) == []
    assert check(rejects, REJECTS_SCHEMA) == []
    assert list(hits.columns) == list(HITS_SCHEMA)
    if hasattr(parser, "parse_bytes"):
        fast = parser.parse_bytes(_chunk(lines), tz)
        if fast is not None:
            assert_frame_equal(fast[0], hits)
            assert_frame_equal(fast[1], rejects)
    return hits, rejects


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def row(hits: pl.DataFrame, i: int = 0) -> dict[str, Any]:
    return hits.row(i, named=True)


def hit(**fields: Any) -> dict[str, Any]:
    """A full hits row: every column null unless given."""
    out: dict[str, Any] = dict.fromkeys(HITS_SCHEMA)
    out["source"] = "test.log"
    out.update(fields)
    return out


def _cfg_with_formats(tmp_path: Path, yaml_text: str) -> Config:
    path = tmp_path / "formats.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    return load_config(path)


# --------------------------------------------------------------------------- combined
def test_combined_exact(cfg: Config) -> None:
    hits, rejects = parse("combined", [
        '203.0.113.7 - frank [10/Oct/2023:13:55:36 +0200] "GET /products/red-shoe?ref=home&x=1 HTTP/1.1" 200 2326 "https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/118.0"',
        '2001:0db8:0000:0000:0000:0000:0000:0001 - - [10/Oct/2023:11:56:00 +0000] "POST /cart HTTP/2.0" 302 - "-" "-"',
        '::ffff:198.51.100.4 - - [10/Oct/2023:04:57:01 -0700] "HEAD / HTTP/1.0" 304 0 "-" "curl/8.4.0"',
    ], cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 11, 55, 36), client_ip="203.0.113.7", method="GET",
            path="/products/red-shoe", query="ref=home&x=1", protocol="HTTP/1.1", status=200,
            bytes=2326, referer="https://shop.example/",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/118.0", line_no=1),
        hit(ts=ts(2023, 10, 10, 11, 56, 0), client_ip="2001:db8::1", method="POST", path="/cart",
            protocol="HTTP/2.0", status=302, line_no=2),
        hit(ts=ts(2023, 10, 10, 11, 57, 1), client_ip="198.51.100.4", method="HEAD", path="/",
            protocol="HTTP/1.0", status=304, bytes=0, user_agent="curl/8.4.0", line_no=3),
    ]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("10/Oct/2023:13:55:36 +0000", ts(2023, 10, 10, 13, 55, 36)),
        ("10/Oct/2023:13:55:36 +0200", ts(2023, 10, 10, 11, 55, 36)),
        ("10/Oct/2023:01:30:00 +0530", ts(2023, 10, 9, 20, 0, 0)),
        ("31/Dec/2023:23:30:00 -0100", ts(2024, 1, 1, 0, 30, 0)),
        ("29/Feb/2024:00:00:00 +1400", ts(2024, 2, 28, 10, 0, 0)),
    ],
)
def test_timestamp_offsets_convert_to_utc(cfg: Config, stamp: str, expected: datetime) -> None:
    hits, _ = parse("combined", [f'192.0.2.1 - - [{stamp}] "GET / HTTP/1.1" 200 1 "-" "ua"'], cfg)
    assert hits["ts"].to_list() == [expected]
    assert hits.schema["ts"] == pl.Datetime("us", "UTC")


@pytest.mark.parametrize("odd", ["+ABCD", "+2500", "+0060", "Z", "+01:00", "0100", "+01000"])
def test_odd_zones_read_the_same_on_both_paths(cfg: Config, odd: str) -> None:
    """The bytes path applies "+hhmm" zones per distinct zone and leaves any other spelling to
    the full parser: a batch mixing them reads as the line path reads each line."""
    lines = [
        f'192.0.2.1 - - [10/Oct/2023:13:55:36 {zone}] "GET / HTTP/1.1" 200 1 "-" "ua"'
        for zone in ("+0200", odd, "-0700", odd)
    ]
    hits, rejects = parse("combined", lines, cfg)  # asserts both paths give the same frames
    assert hits.filter(pl.col("line_no") == 1)["ts"].to_list() == [ts(2023, 10, 10, 11, 55, 36)]
    assert hits.filter(pl.col("line_no") == 3)["ts"].to_list() == [ts(2023, 10, 10, 20, 55, 36)]
    assert len(hits) + len(rejects) == 4


def test_naive_timestamp_uses_default_timezone(cfg: Config) -> None:
    line = '192.0.2.1 - - [10/Oct/2023:13:55:36] "GET / HTTP/1.1" 200 1 "-" "ua"'
    hits, rejects = parse("combined", [line], cfg, tz="Europe/Paris")
    assert rejects.is_empty()
    assert hits["ts"].to_list() == [ts(2023, 10, 10, 11, 55, 36)]


@pytest.mark.parametrize(
    ("request_text", "path"),
    [
        ("\\x16\\x03\\x01\\x00\\xCA\\x01\\x00\\x00", "\\x16\\x03\\x01\\x00\\xCA\\x01\\x00\\x00"),
        ("HELP", "HELP"),
        ("-", None),
        ("", None),
    ],
)
def test_malformed_request_keeps_raw_text_as_path(cfg: Config, request_text: str, path: str | None) -> None:
    line = f'192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "{request_text}" 400 0 "-" "-"'
    hits, rejects = parse("combined", [line], cfg)
    assert rejects.is_empty()
    r = row(hits)
    assert (r["method"], r["path"], r["query"], r["protocol"], r["status"]) == (None, path, None, None, 400)


def test_request_without_protocol(cfg: Config) -> None:
    hits, _ = parse("combined", ['192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /old?a=b" 200 1 "-" "ua"'], cfg)
    r = row(hits)
    assert (r["method"], r["path"], r["query"], r["protocol"]) == ("GET", "/old", "a=b", None)


def test_absolute_form_target_keeps_path_and_query(cfg: Config) -> None:
    line = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET http://example.com:80/x/y?z=1 HTTP/1.1" 200 1 "-" "ua"'
    hits, _ = parse("combined", [line], cfg)
    r = row(hits)
    assert (r["method"], r["path"], r["query"]) == ("GET", "/x/y", "z=1")


def test_connect_request_keeps_authority(cfg: Config) -> None:
    line = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "CONNECT example.com:443 HTTP/1.1" 400 0 "-" "-"'
    hits, _ = parse("combined", [line], cfg)
    r = row(hits)
    assert (r["method"], r["path"], r["protocol"]) == ("CONNECT", "example.com:443", "HTTP/1.1")


def test_escaped_quotes_in_agent_use_tolerant_path(cfg: Config) -> None:
    line = ('192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 '
            '"https://r.example/?q=\\"x\\"" "Mozilla/5.0 \\"quoted\\" agent"')
    hits, rejects = parse("combined", [line], cfg)
    assert rejects.is_empty()
    r = row(hits)
    assert r["user_agent"] == 'Mozilla/5.0 "quoted" agent'
    assert r["referer"] == 'https://r.example/?q="x"'
    assert (r["method"], r["path"], r["status"], r["bytes"]) == ("GET", "/a", 200, 5)


def test_escaped_backslash_is_unescaped_on_both_paths(cfg: Config) -> None:
    fast = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "C:\\\\dir\\\\ua"'
    slow = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "C:\\\\dir\\\\ua \\"q\\""'
    hits, _ = parse("combined", [fast, slow], cfg)
    assert hits["user_agent"].to_list() == ["C:\\dir\\ua", 'C:\\dir\\ua "q"']


def test_combined_with_extra_trailing_field(cfg: Config) -> None:
    line = '192.0.2.1 - - [14/Oct/2019:10:50:18 +0200] "GET /x HTTP/1.1" 200 7 "-" "node-fetch/1.0" "-"'
    hits, rejects = parse("combined", [line], cfg)
    assert rejects.is_empty()
    r = row(hits)
    assert (r["path"], r["status"], r["bytes"], r["user_agent"]) == ("/x", 200, 7, "node-fetch/1.0")
    assert r["ts"] == ts(2019, 10, 14, 8, 50, 18)


def test_combined_tolerates_common_lines_and_trailing_space(cfg: Config) -> None:
    hits, rejects = parse("combined", [
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /c HTTP/1.1" 200 5',
        '192.0.2.2 - - [10/Oct/2023:13:55:36 +0000] "GET /d HTTP/1.1" 200 5 "-" "ua" ',
    ], cfg)
    assert rejects.is_empty()
    assert hits.select("client_ip", "path", "referer", "user_agent").rows() == [
        ("192.0.2.1", "/c", None, None),
        ("192.0.2.2", "/d", None, "ua"),
    ]


def test_rejects_carry_reasons(cfg: Config) -> None:
    lines = [
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ok"',
        "complete garbage",
        '192.0.2.1 - - [99/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
        '999.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
        'example.com - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" abc 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 1000 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 99 5 "-" "ua"',
    ]
    hits, rejects = parse("combined", lines, cfg)
    assert hits["line_no"].to_list() == [1]
    assert rejects.to_dicts() == [
        {"source": "test.log", "line_no": 2, "reason": "no_match", "line": lines[1]},
        {"source": "test.log", "line_no": 3, "reason": "bad_timestamp", "line": lines[2]},
        {"source": "test.log", "line_no": 4, "reason": "bad_client_ip", "line": lines[3]},
        {"source": "test.log", "line_no": 5, "reason": "bad_client_ip", "line": lines[4]},
        {"source": "test.log", "line_no": 6, "reason": "bad_status", "line": lines[5]},
        {"source": "test.log", "line_no": 7, "reason": "bad_status", "line": lines[6]},
        {"source": "test.log", "line_no": 8, "reason": "bad_status", "line": lines[7]},
    ]


@pytest.mark.parametrize("k", range(1, 8))
def test_each_reject_reason_is_found_alone(cfg: Config, k: int) -> None:
    """A batch whose only bad line is one of each kind: the no-reject shortcut (column counts
    and bounds) must not miss any reason the per-row chain gives."""
    lines = [
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ok"',
        "complete garbage",
        '192.0.2.1 - - [99/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
        '999.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" abc 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 1000 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 99 5 "-" "ua"',
        '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 100 5 "-" "ua"',
    ]
    reasons = ["no_match", "bad_timestamp", "bad_client_ip", "bad_status", "bad_status", "bad_status", None]
    hits, rejects = parse("combined", [lines[0], lines[k]], cfg)
    if reasons[k - 1] is None:
        assert rejects.is_empty() and hits["status"].to_list() == [200, 100]
    else:
        assert hits["line_no"].to_list() == [1]
        assert rejects.select("line_no", "reason").rows() == [(2, reasons[k - 1])]


def test_a_missing_status_is_not_a_reject(cfg: Config) -> None:
    lines = ['192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" - 5 "-" "ua"']
    hits, rejects = parse("combined", lines, cfg)
    assert rejects.is_empty() and hits["status"].to_list() == [None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:c000:0201", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("01.2.3.4", None),
        ("1.2.3", None),
        ("nope", None),
        ("", None),
    ],
)
def test_normalize_ip(raw: str, expected: str | None) -> None:
    assert normalize_ip(raw) == expected


# --------------------------------------------------------------------------- common / vcombined
def test_common_exact(cfg: Config) -> None:
    hits, rejects = parse("common", [
        '203.0.113.7 - - [10/Oct/2023:13:55:36 +0000] "GET /robots.txt HTTP/1.1" 200 68',
        '198.51.100.4 - alice [10/Oct/2023:13:55:37 +0000] "GET /p/1?x=1 HTTP/1.1" 404 -',
    ], cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36), client_ip="203.0.113.7", method="GET", path="/robots.txt",
            protocol="HTTP/1.1", status=200, bytes=68, line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="198.51.100.4", method="GET", path="/p/1",
            query="x=1", protocol="HTTP/1.1", status=404, line_no=2),
    ]


def test_vcombined_exact(cfg: Config) -> None:
    hits, rejects = parse("vcombined", [
        'shop.example:443 203.0.113.7 - - [10/Oct/2023:13:55:36 +0000] "GET /search?q=shoes HTTP/1.1" 200 512 "-" "Mozilla/5.0"',
        'shop.example:80 2001:db8::0:7 - - [10/Oct/2023:13:55:37 +0000] "GET / HTTP/1.1" 301 0 "-" "python-requests/2.31.0"',
    ], cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36), client_ip="203.0.113.7", method="GET", path="/search",
            query="q=shoes", protocol="HTTP/1.1", status=200, bytes=512, user_agent="Mozilla/5.0",
            host="shop.example", line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="2001:db8::7", method="GET", path="/",
            protocol="HTTP/1.1", status=301, bytes=0, user_agent="python-requests/2.31.0",
            host="shop.example", line_no=2),
    ]


# --------------------------------------------------------------------------- nginx log_format
def test_nginx_custom_log_format_with_cookie(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    shop:\n"
        "      type: nginx\n"
        "      log_format: '$remote_addr - [$time_local] \"$request\" $status $body_bytes_sent "
        "\"$http_user_agent\" sid=$cookie_sid rt=$request_time $host'\n"
    ))
    hits, rejects = parse("shop", [
        '203.0.113.7 - [10/Oct/2023:13:55:36 +0000] "GET /p/1?x=2 HTTP/1.1" 200 77 "Mozilla/5.0 (X)" sid=abc123 rt=0.015 shop.example',
        '203.0.113.8 - [10/Oct/2023:13:55:37 +0000] "GET / HTTP/1.1" 200 5 "-" sid=- rt=- shop.example',
        "not an nginx line",
    ], cfg)
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36), client_ip="203.0.113.7", method="GET", path="/p/1",
            query="x=2", protocol="HTTP/1.1", status=200, bytes=77, user_agent="Mozilla/5.0 (X)",
            host="shop.example", request_time_s=0.015, session_id="abc123", line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="203.0.113.8", method="GET", path="/",
            protocol="HTTP/1.1", status=200, bytes=5, host="shop.example", line_no=2),
    ]
    assert rejects.select("line_no", "reason").rows() == [(3, "no_match")]


def test_nginx_split_request_fields_and_iso_time(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    split:\n"
        "      type: nginx\n"
        "      log_format: '$time_iso8601 $remote_addr $request_method $uri $args $server_protocol $status $bytes_sent'\n"
    ))
    hits, rejects = parse("split", [
        "2023-10-10T15:55:36+02:00 192.0.2.1 GET /p/1 a=1&b=2 HTTP/1.1 200 10",
        "2023-10-10T13:55:37+00:00 192.0.2.2 POST /cart - HTTP/2.0 201 0",
    ], cfg)
    assert rejects.is_empty()
    assert hits.select("ts", "client_ip", "method", "path", "query", "protocol", "status", "bytes").rows() == [
        (ts(2023, 10, 10, 13, 55, 36), "192.0.2.1", "GET", "/p/1", "a=1&b=2", "HTTP/1.1", 200, 10),
        (ts(2023, 10, 10, 13, 55, 37), "192.0.2.2", "POST", "/cart", None, "HTTP/2.0", 201, 0),
    ]


def test_iliou_format_captures_session_and_blank_address(cfg: Config) -> None:
    hits, rejects = parse("iliou", [
        '- - [01/Nov/2019:10:47:35 +0000] "GET /css/main.css HTTP/1.1" 200 735 "http://160.40.52.164/" 97hf7ciplt2k54f5j6109nekn0 "Mozilla/5.0 (X11)"',
        '- - [01/Nov/2019:10:43:18 +0000] "GET / HTTP/1.0" 200 2045 "-" - "-"',
    ], cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2019, 11, 1, 10, 47, 35), method="GET", path="/css/main.css", protocol="HTTP/1.1",
            status=200, bytes=735, referer="http://160.40.52.164/", user_agent="Mozilla/5.0 (X11)",
            session_id="97hf7ciplt2k54f5j6109nekn0", line_no=1),
        hit(ts=ts(2019, 11, 1, 10, 43, 18), method="GET", path="/", protocol="HTTP/1.0",
            status=200, bytes=2045, line_no=2),
    ]


# --------------------------------------------------------------------------- JSON lines
def test_json_with_field_map_nested_epoch_and_iso(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    app:\n"
        "      type: json\n"
        "      fields: {ts: t, client_ip: client.ip, method: req.method, path: req.uri, status: status,\n"
        "               bytes: bytes, user_agent: ua, session_id: client.session}\n"
    ))
    hits, rejects = parse("app", [
        '{"t": 1700000000, "client": {"ip": "2001:db8:0::1", "session": "s1"}, "req": {"method": "GET", "uri": "/a?b=1"}, "status": 200, "bytes": 12, "ua": "x"}',
        '{"t": 1700000000123, "client": {"ip": "::ffff:192.0.2.9"}, "req": {"method": "GET", "uri": "/a"}, "status": "304", "bytes": null, "ua": "x"}',
        '{"t": "2023-11-14T22:13:20Z", "client": {"ip": "192.0.2.1"}, "req": {"method": "HEAD", "uri": "/"}, "status": 200, "bytes": 1, "ua": "-"}',
        '{"t": "2023-11-14T23:13:20.500+01:00", "client": {"ip": "192.0.2.1"}, "req": {"method": "GET", "uri": "/b"}, "status": 200, "bytes": 1, "ua": "x"}',
        '{"t": 1700000000.25, "client": {"ip": "192.0.2.2"}, "req": {"method": "GET", "uri": "/c"}, "status": 200, "bytes": 1, "ua": "x"}',
        "not json",
        '{"t": "yesterday", "client": {"ip": "192.0.2.1"}, "req": {"method": "GET", "uri": "/"}, "status": 200}',
    ], cfg)
    assert hits.select("ts", "client_ip", "method", "path", "query", "status", "bytes", "user_agent", "session_id").rows() == [
        (ts(2023, 11, 14, 22, 13, 20), "2001:db8::1", "GET", "/a", "b=1", 200, 12, "x", "s1"),
        (ts(2023, 11, 14, 22, 13, 20) + timedelta(milliseconds=123), "192.0.2.9", "GET", "/a", None, 304, None, "x", None),
        (ts(2023, 11, 14, 22, 13, 20), "192.0.2.1", "HEAD", "/", None, 200, 1, None, None),
        (ts(2023, 11, 14, 22, 13, 20) + timedelta(milliseconds=500), "192.0.2.1", "GET", "/b", None, 200, 1, "x", None),
        (ts(2023, 11, 14, 22, 13, 20) + timedelta(milliseconds=250), "192.0.2.2", "GET", "/c", None, 200, 1, "x", None),
    ]
    assert rejects.select("line_no", "reason").rows() == [(6, "no_match"), (7, "bad_timestamp")]


def test_json_keys_ecs_style_flat_and_nested(tmp_path: Path) -> None:
    """Keys as ELK/ECS logs write them: ``@timestamp``, flattened dotted keys and the same
    keys nested; JSON keys named like the line columns (``source``, ``line``) do not clash."""
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    ecs:\n"
        "      type: json\n"
        "      fields: {ts: '@timestamp', client_ip: source.ip, method: http.request.method, path: url.original,\n"
        "               status: http.response.status_code, user_agent: user_agent.original, host: line}\n"
    ))
    hits, rejects = parse("ecs", [
        '{"@timestamp": "2023-11-14T22:13:20Z", "source": {"ip": "192.0.2.1"}, "http": {"request": {"method": "GET"},'
        ' "response": {"status_code": 200}}, "url": {"original": "/p/1?x=2"}, "user_agent": {"original": "ua1"}, "line": "h1"}',
        '{"@timestamp": "2023-11-14T22:13:21Z", "source.ip": "192.0.2.2", "http.request.method": "POST",'
        ' "http.response.status_code": 404, "url.original": "/cart", "user_agent.original": "ua2"}',
        '  {"@timestamp": "2023-11-14T22:13:22Z", "source": {"ip": "192.0.2.3"}, "url": "/not-an-object"}',
    ], cfg)
    # Line 3: "url" is a string where the map expects an object; the line is read flat and
    # keeps what it has.
    assert hits.select("ts", "client_ip", "method", "path", "query", "status", "user_agent", "host").rows() == [
        (ts(2023, 11, 14, 22, 13, 20), "192.0.2.1", "GET", "/p/1", "x=2", 200, "ua1", "h1"),
        (ts(2023, 11, 14, 22, 13, 21), "192.0.2.2", "POST", "/cart", None, 404, "ua2", None),
        (ts(2023, 11, 14, 22, 13, 22), "192.0.2.3", None, None, None, None, None, None),
    ]
    assert rejects.is_empty()


def test_json_parent_that_is_sometimes_a_value(tmp_path: Path) -> None:
    """A key wanted both as a value and as a parent (``req`` and ``req.path``), and a parent
    that is a scalar on every line: all lines parse, at the reader's speed, not one by one."""
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    both: {type: json, fields: {ts: ts, client_ip: ip, path: req.path, host: req}}\n"
        "    scalar: {type: json, fields: {ts: ts, client_ip: ip, path: url.path}}\n"
    ))
    hits, rejects = parse("both", ['{"ts": 1700000000, "ip": "192.0.2.1", "req": {"path": "/x"}}'], cfg)
    assert rejects.is_empty()
    assert hits.select("client_ip", "path", "host").rows() == [("192.0.2.1", "/x", '{"path": "/x"}')]
    lines = [f'{{"ts": {1_700_000_000 + i}, "ip": "192.0.2.{i % 200}", "url": "/x", "url.path": "/p/{i}"}}' for i in range(20_000)]
    path = tmp_path / "scalar.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hits, stats = read_hits([str(path)], cfg, format="scalar")
    assert (stats.parsed, stats.rejected) == (20_000, 0)
    assert hits["path"][7] == "/p/7"


def test_json_line_never_depends_on_its_neighbours(tmp_path: Path) -> None:
    """Lines the tolerant check refuses but the reader takes (a lone surrogate escape, deep
    nesting) parse the same beside a broken line as alone."""
    cfg = _cfg_with_formats(tmp_path, "ingest:\n  formats:\n    app: {type: json, fields: {ts: ts, client_ip: ip, path: p}}\n")
    odd = [
        '{"ts": 1700000000, "ip": "192.0.2.1", "p": "/a", "ua": "bad\\ud83d bot"}',
        '{"ts": 1700000001, "ip": "192.0.2.2", "p": "/b", "x": ' + "[" * 200 + "]" * 200 + "}",
    ]
    broken = '{"ts": 1700000002, "ip": "192.0.2.3", "p": "/c"'
    alone, _ = parse("app", odd, cfg)
    beside, rejects = parse("app", [*odd, broken], cfg)
    assert alone["path"].to_list() == beside["path"].to_list() == ["/a", "/b"]
    assert rejects.select("line_no", "reason").rows() == [(3, "bad_timestamp")]


def test_huge_epoch_is_a_rejected_line_not_a_crash(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, "ingest:\n  formats:\n    app: {type: json, fields: {ts: ts, client_ip: ip}}\n")
    hits, rejects = parse("app", [
        '{"ts": 99999999999999999999999999999, "ip": "192.0.2.1"}',
        '{"ts": 1e300, "ip": "192.0.2.1"}',
        '{"ts": 1700000000, "ip": "192.0.2.2"}',
    ], cfg)
    assert hits["client_ip"].to_list() == ["192.0.2.2"]
    assert rejects.select("line_no", "reason").rows() == [(1, "bad_timestamp"), (2, "bad_timestamp")]


def test_json_broken_lines_among_many_are_rejected_one_by_one(tmp_path: Path) -> None:
    """A chunk far longer than a block, with broken objects, stray text and a blank line: every
    good line parses, each bad one is rejected with its own line number and text, the blank
    one is counted as blank."""
    cfg = load_config(None)
    good = '{{"EdgeStartTimestamp": {t}, "ClientIP": "192.0.2.{i}", "ClientRequestMethod": "GET", "ClientRequestURI": "/p/{i}", "EdgeResponseStatus": 200}}'
    lines = [good.format(t=1_700_000_000 + i, i=i % 250) for i in range(10_000)]
    bad = {1234: '{"EdgeStartTimestamp": 1700000000, "ClientIP": ', 5000: "garbage", 9998: '{"a": 1}} trailing'}
    for k, text in bad.items():
        lines[k] = text
    lines[7000] = ""
    path = tmp_path / "cf.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hits, stats = read_hits([str(path)], cfg, format="cloudflare")
    assert (stats.parsed, stats.rejected, stats.blank) == (10_000 - 4, 3, 1)
    assert stats.rejected_by_reason == {"bad_timestamp": 2, "no_match": 1}
    assert hits["line_no"].to_list() == [n for n in range(1, 10_001) if n - 1 not in bad and n != 7001]
    assert hits["path"][1235 - 1] == "/p/" + str(1235 % 250)
    # The same lines through the line path give the same frames.
    parser = get_parser("cloudflare", cfg)
    by_lines = parser.parse(_lines(lines), "UTC")
    by_bytes = parser.parse_bytes(_chunk(lines), "UTC")
    assert by_bytes is not None
    assert_frame_equal(by_bytes[0], by_lines[0])
    assert_frame_equal(by_bytes[1], by_lines[1])
    expected = {**{k: ("no_match" if k == 5000 else "bad_timestamp", text) for k, text in bad.items()}, 7000: ("no_match", "")}
    assert by_bytes[1].select("line_no", "reason", "line").rows() == [(k + 1, *expected[k]) for k in sorted(expected)]


def test_json_format_needs_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  formats:\n    app: {type: json}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("ingest.formats.app" in p and "needs fields" in p for p in info.value.problems)


def test_default_jsonl_format(cfg: Config) -> None:
    hits, rejects = parse("jsonl", (LOGS / "jsonl.log").read_text().splitlines(), cfg)
    assert rejects.is_empty()
    assert hits.select("ts", "client_ip", "path", "query", "status", "bytes", "referer", "host").rows() == [
        (ts(2023, 10, 10, 13, 55, 36), "203.0.113.7", "/products/1", "x=1", 200, 512, None, "shop.example"),
        (ts(2023, 10, 10, 13, 55, 37) + timedelta(milliseconds=250), "198.51.100.4", "/", None, 301, 0,
         "https://a.example/", "shop.example"),
    ]


_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/142.0 Safari/537.36"
_JSON_SCHEMAS = {
    # Google Cloud load balancer / Cloud Run request logs: nested httpRequest, full URL.
    "gcp": '{"httpRequest":{"requestMethod":"GET","requestUrl":"https://shop.example/products/blue?x=1",'
           '"status":200,"responseSize":"5120","userAgent":"%s","remoteIp":"203.0.113.7",'
           '"referer":"https://shop.example/","protocol":"HTTP/1.1"},"timestamp":"2026-03-02T10:00:00.250Z"}',
    # Traefik's JSON access log.
    "traefik": '{"ClientHost":"203.0.113.7","DownstreamContentSize":5120,"DownstreamStatus":200,'
               '"RequestHost":"shop.example","RequestMethod":"GET","RequestPath":"/products/blue?x=1",'
               '"RequestProtocol":"HTTP/1.1","StartUTC":"2026-03-02T10:00:00.25Z","request_User-Agent":"%s",'
               '"request_Referer":"https://shop.example/"}',
    # nginx log_format ... escape=json, keys named after the variables.
    "nginx": '{"time_local":"02/Mar/2026:10:00:00 +0000","remote_addr":"203.0.113.7",'
             '"request":"GET /products/blue?x=1 HTTP/1.1","status":"200","body_bytes_sent":"5120",'
             '"http_referer":"https://shop.example/","http_user_agent":"%s","http_host":"shop.example"}',
}


@pytest.mark.parametrize("schema", sorted(_JSON_SCHEMAS))
def test_common_json_access_logs_are_sniffed_and_read(schema: str, cfg: Config) -> None:
    line = _JSON_SCHEMAS[schema] % _UA
    parser = sniff(_lines([line]).collect(), cfg)
    assert parser.name == "jsonl"
    hits, rejects = parse("jsonl", [line], cfg)
    assert rejects.is_empty()
    got = hits.select("ts", "client_ip", "method", "path", "query", "protocol", "status", "bytes", "referer", "user_agent").row(0)
    when = ts(2026, 3, 2, 10, 0, 0) + (timedelta(0) if schema == "nginx" else timedelta(milliseconds=250))
    assert got == (when, "203.0.113.7", "GET", "/products/blue", "x=1", "HTTP/1.1", 200, 5120, "https://shop.example/", _UA)
    assert hits["host"][0] == (None if schema == "gcp" else "shop.example")


def test_json_request_line_or_its_parts_whichever_a_line_has(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, """
ingest:
  formats:
    app:
      type: json
      fields: {ts: t, client_ip: ip, request: request, method: m, path: p}
""")
    lines = ['{"t":"2026-03-02T10:00:00Z","ip":"203.0.113.7","request":"HEAD /a?q=1 HTTP/1.1"}',
             '{"t":"2026-03-02T10:00:01Z","ip":"203.0.113.7","m":"POST","p":"/b"}']
    hits, rejects = parse("app", lines, cfg)
    assert rejects.is_empty()
    assert hits.select("method", "path", "query", "protocol").rows() == [("HEAD", "/a", "q=1", "HTTP/1.1"), ("POST", "/b", None, None)]


# --------------------------------------------------------------------------- cloud formats
def test_alb_exact(cfg: Config) -> None:
    hits, rejects = parse("alb", (LOGS / "alb.log").read_text().splitlines(), cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36) + timedelta(microseconds=186641), client_ip="192.0.2.10",
            method="GET", path="/products/1", query="color=red", protocol="HTTP/1.1", status=200,
            bytes=5120, user_agent="Mozilla/5.0 (Windows NT 10.0)", host="shop.example",
            request_time_s=0.048, line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="2001:db8::7", method="GET", path="/missing",
            protocol="HTTP/2.0", status=404, bytes=0, user_agent="curl/8.4.0", host="shop.example",
            request_time_s=0.002, line_no=2),
    ]


def test_alb_ipv6_client_port_is_stripped(cfg: Config) -> None:
    """ALB writes IPv6 clients unbracketed with the port after the last colon."""
    line = ('h2 2023-10-10T13:55:37.000000Z app/lb/50dc 2001:db8::1:443 10.0.0.1:80 0.001 0.002 0.000 '
            '200 200 80 0 "GET https://shop.example:443/ HTTP/2.0" "ua" - - arn "Root=1" "shop.example" "-"')
    hits, rejects = parse("alb", [line], cfg)
    assert rejects.is_empty()
    assert hits["client_ip"].to_list() == ["2001:db8::1"]


def test_alb_escaped_quotes_and_short_lines(cfg: Config) -> None:
    """ALB escapes quotes inside fields; lines from before the trace and domain fields existed
    end after the target group."""
    head = 'https 2023-10-10T13:55:36.186641Z app/lb/50dc 192.0.2.10:2817 10.0.0.1:80 0.001 0.048 0.000 200 200 120 5120 '
    hits, rejects = parse("alb", [
        head + '"GET https://shop.example:443/p/1 HTTP/1.1" "Mozilla/5.0 \\"x\\"" ECDHE TLSv1.2 arn:tg "Root=1" "shop.example" "-" 0',
        head + '"GET http://shop.example:80/p/2 HTTP/1.1" "curl/8" - - arn:tg',
    ], cfg)
    assert rejects.is_empty()
    assert hits.select("client_ip", "path", "user_agent", "host", "request_time_s").rows() == [
        ("192.0.2.10", "/p/1", 'Mozilla/5.0 "x"', "shop.example", 0.048),
        ("192.0.2.10", "/p/2", "curl/8", None, 0.048),
    ]


def test_cloudfront_exact(cfg: Config) -> None:
    lines = (LOGS / "cloudfront.log").read_text().splitlines()
    assert lines[0].startswith("#Version")
    hits, rejects = parse("cloudfront", lines, cfg)
    # Called directly, the '#' header lines are not hits (Ingest counts them as comments).
    assert rejects.select("line_no", "reason").rows() == [(1, "no_match"), (2, "no_match")]
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36), client_ip="192.0.2.100", method="GET", path="/index.html",
            protocol="HTTP/2.0", status=200, bytes=392, referer="https://www.example.com/?a=1",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/118.0", host="shop.example",
            request_time_s=0.001, line_no=3),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="2001:db8::5", method="GET", path="/products/2",
            query="sort=price&page=2", protocol="HTTP/1.1", status=404, bytes=1024,
            user_agent="python-requests/2.31.0", host="shop.example", request_time_s=0.25, line_no=4),
    ]


def test_cloudfront_header_lines_are_comments_via_ingest(cfg: Config) -> None:
    hits, stats = read_hits([str(LOGS / "cloudfront.log")], cfg, format="cloudfront")
    assert (stats.comments, stats.parsed, stats.rejected) == (2, 2, 0)
    assert hits["line_no"].to_list() == [3, 4]


def test_cloudflare_exact(cfg: Config) -> None:
    hits, rejects = parse("cloudflare", (LOGS / "cloudflare.jsonl").read_text().splitlines(), cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 55, 36), client_ip="203.0.113.9", method="GET", path="/products/1",
            query="x=1", protocol="HTTP/2", status=200, bytes=1234, referer="https://shop.example/",
            user_agent='Mozilla/5.0 "quoted"', host="shop.example",
            tls_fingerprint="t13d1516h2_8daaf6152771_02713d6af862", line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 55, 37), client_ip="2001:db8::9", method="POST", path="/cart",
            protocol="HTTP/1.1", status=403, bytes=0, user_agent="curl/8.4.0", host="shop.example",
            line_no=2),
    ]


def test_caddy_exact(cfg: Config) -> None:
    """Caddy logs headers as lists; before 2.7 only ``remote_ip`` (line 2), before 2.5 only
    ``remote_addr`` with its port (line 3)."""
    hits, rejects = parse("caddy", (LOGS / "caddy.jsonl").read_text().splitlines(), cfg)
    assert rejects.is_empty()
    assert hits.to_dicts() == [
        hit(ts=ts(2023, 10, 10, 13, 45, 36) + timedelta(milliseconds=250), client_ip="203.0.113.5", method="GET",
            path="/products/1", query="x=1", protocol="HTTP/2.0", status=200, bytes=10900,
            referer="https://shop.example/", user_agent='Mozilla/5.0 "quoted" Firefox/118.0',
            host="shop.example", request_time_s=0.000929675, line_no=1),
        hit(ts=ts(2023, 10, 10, 13, 45, 37), client_ip="2001:db8::9", method="POST", path="/cart",
            protocol="HTTP/1.1", status=403, bytes=0, user_agent="curl/8.4.0", host="shop.example",
            request_time_s=0.25, line_no=2),
        hit(ts=ts(2023, 10, 10, 13, 45, 38), client_ip="198.51.100.4", method="GET", path="/",
            protocol="HTTP/1.1", status=200, bytes=5, user_agent="curl/7.1", host="shop.example",
            request_time_s=0.01, line_no=3),
    ]


def test_w3c_iis_exact_with_a_changed_fields_directive(cfg: Config) -> None:
    """IIS's default columns, then a restart that logs other columns: each line is read by the
    last ``#Fields:`` before it; directives and other '#' lines are comments."""
    hits, stats = read_hits([str(LOGS / "iis.log")], cfg, format="w3c")
    assert (stats.parsed, stats.comments, stats.rejected) == (3, 8, 0)
    src = str(LOGS / "iis.log")
    assert hits.to_dicts() == [
        hit(source=src, ts=ts(2023, 10, 10, 13, 55, 36), client_ip="203.0.113.7", method="GET", path="/products/1",
               query="x=1", status=200, referer="https://shop.example/",
               user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/118.0", request_time_s=0.015,
               line_no=5),
        hit(source=src, ts=ts(2023, 10, 10, 13, 55, 37), client_ip="2001:db8::7", method="GET", path="/", status=404,
               user_agent="curl/8.4.0", request_time_s=0.003, line_no=6),
        hit(source=src, ts=ts(2023, 10, 10, 14, 0, 1), client_ip="198.51.100.4", method="POST", path="/cart",
               protocol="HTTP/1.1", status=302, bytes=120, user_agent="python-requests/2.31.0",
               host="shop.example", request_time_s=0.25, x_forwarded_for="203.0.113.99", line_no=11),
    ]


def test_w3c_fields_directive_carries_over_to_the_next_batch(cfg: Config) -> None:
    parser = get_parser("w3c", cfg)
    header = "#Fields: date time c-ip cs-method cs-uri-stem sc-status"
    first, _ = parser.parse(_lines([header, "2023-10-10 13:55:36 192.0.2.1 GET /a 200"]), "UTC")
    second, rejects = parser.parse(_lines(["2023-10-10 13:55:37 192.0.2.2 GET /b 404"]), "UTC")
    assert rejects.is_empty()
    assert first["path"].to_list() + second["path"].to_list() == ["/a", "/b"]
    assert second["status"].to_list() == [404]
    # A line whose column count does not match the directive is a reject, not a shifted row.
    _, bad = parser.parse(_lines(["2023-10-10 13:55:38 192.0.2.3 GET /c"]), "UTC")
    assert bad.select("line_no", "reason").rows() == [(1, "no_match")]


# --------------------------------------------------------------------------- registry / sniffing
def test_unknown_format_lists_known_ones(cfg: Config) -> None:
    with pytest.raises(ConfigError) as info:
        get_parser("nosuch", cfg)
    (problem,) = info.value.problems
    assert "'nosuch'" in problem
    for name in known_formats(cfg):
        assert name in problem
    assert {"combined", "common", "vcombined", "alb", "cloudfront", "cloudflare", "caddy", "iliou"} <= set(known_formats(cfg))


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("combined.log", "combined"),
        ("vcombined.log", "vcombined"),
        ("alb.log", "alb"),
        ("cloudfront.log", "cloudfront"),
        ("cloudflare.jsonl", "cloudflare"),
        ("caddy.jsonl", "caddy"),
        ("iis.log", "w3c"),
        ("jsonl.log", "jsonl"),
        ("nginx_xff.log", "nginx_xff"),
    ],
)
def test_sniff_picks_the_format(cfg: Config, fixture: str, expected: str) -> None:
    lines = [x for x in (LOGS / fixture).read_text().splitlines() if not x.startswith("#")]
    frame = _lines(lines).collect()
    assert sniff(frame, cfg).name == expected


def _fixture_samples() -> list[list[str]]:
    """Every fixture log, each alone and all of them mixed, plus lines no format reads."""
    logs = [
        [x for x in path.read_text(encoding="utf-8", errors="replace").splitlines() if not x.startswith("#")]
        for path in sorted(LOGS.iterdir())
    ]
    junk = ["", "garbage", '{"not": "a hit"}', "{", '1.2.3.4 - - [x] "GET / HTTP/1.1" 200 5', "\t\t\t"]
    return [*logs, [line for log in logs for line in log[:5]], junk]


@pytest.mark.parametrize("sample", _fixture_samples(), ids=lambda s: s[0][:20] if s else "empty")
def test_could_parse_bounds_the_hits_of_every_candidate(cfg: Config, sample: list[str]) -> None:
    """``--format auto`` skips a format whose bound is below the best ratio so far: the bound
    must never be lower than what the format's parse gives, or a sniff would miss its format."""
    frame = _lines(sample).collect()
    bounded = 0
    for parser in sniff_candidates(cfg):
        could_parse = getattr(parser, "could_parse", None)
        if could_parse is None:
            continue
        bounded += 1
        hits, _ = parser.parse(frame.lazy(), "UTC")
        assert len(hits) <= could_parse(frame), parser.name
    assert bounded >= 8  # the regex and JSON formats all have one


@pytest.mark.parametrize("sample", _fixture_samples(), ids=lambda s: s[0][:20] if s else "empty")
def test_sniff_with_bounds_chooses_as_parsing_every_candidate_does(
    cfg: Config, sample: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _lines(sample).collect()
    pruned = sniff(frame, cfg).name
    from botguard.parsers.jsonlines import JsonLinesParser
    from botguard.parsers.logformat import RegexLogParser

    monkeypatch.delattr(RegexLogParser, "could_parse")
    monkeypatch.delattr(JsonLinesParser, "could_parse")
    assert sniff(frame, cfg).name == pruned


def test_the_first_chunk_of_a_sniffed_log_takes_the_fast_path(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the sniffed sample goes through the regexes: the first chunk (16 MiB by default)
    is read like every other, and the hits are those of a run told the format."""
    from botguard.parsers.logformat import RegexLogParser

    line = '203.0.113.{i} - - [10/Oct/2023:13:55:{s:02d} +0000] "GET /p/{i} HTTP/1.1" 200 {i} "-" "ua {i}"\n'
    log = tmp_path / "access.log"
    log.write_text("".join(line.format(i=i % 250, s=i % 60) for i in range(5000)), encoding="utf-8")
    regex_lines: list[int] = []
    parse = RegexLogParser.parse

    def spy(self: RegexLogParser, lines: pl.LazyFrame, default_tz: str) -> Any:
        regex_lines.append(len(lines.collect()))
        return parse(self, lines, default_tz)

    monkeypatch.setattr(RegexLogParser, "parse", spy)
    sniffed, stats = read_hits([str(log)], cfg)
    assert (stats.format, stats.format_sniffed, stats.parsed) == ("combined", True, 5000)
    assert regex_lines and max(regex_lines) <= cfg.ingest.sniff_lines
    told, _ = read_hits([str(log)], cfg, format="combined")
    assert_frame_equal(sniffed, told)


def test_common_log_sniffs_to_a_format_that_parses_it_all(cfg: Config) -> None:
    hits, stats = read_hits([str(LOGS / "common.log")], cfg)
    assert stats.format in ("common", "combined")
    assert (stats.parsed, stats.rejected) == (2, 0)
    assert hits["bytes"].to_list() == [68, None]


# --------------------------------------------------------------------------- trusted proxies
@pytest.fixture(scope="module")
def proxy_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("cfg") / "proxies.yaml"
    path.write_text("ingest:\n  format: nginx_xff\n  trusted_proxies: [10.0.0.0/8]\n", encoding="utf-8")
    return load_config(path)


def _xff_line(peer: str, xff: str) -> str:
    return f'{peer} - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" "{xff}"'


@pytest.mark.parametrize(
    ("peer", "xff", "client", "peer_ip"),
    [
        # trusted peer: the right-most untrusted address wins
        ("10.0.0.5", "203.0.113.7", "203.0.113.7", "10.0.0.5"),
        # spoofed left-hand entries are ignored; trusted hops on the right are skipped
        ("10.0.0.5", "1.1.1.1, 198.51.100.2, 10.1.1.1", "198.51.100.2", "10.0.0.5"),
        ("10.0.0.5", "2001:DB8::0:7", "2001:db8::7", "10.0.0.5"),
        # untrusted peer: its own address, whatever it claims
        ("198.51.100.9", "203.0.113.7", "198.51.100.9", None),
        # nothing to believe
        ("10.0.0.5", "-", "10.0.0.5", None),
        ("10.0.0.5", "10.2.2.2, 10.3.3.3", "10.0.0.5", None),
        ("10.0.0.5", "203.0.113.8, garbage", "10.0.0.5", None),
    ],
)
def test_trusted_proxies(tmp_path: Path, proxy_cfg: Config, peer: str, xff: str, client: str, peer_ip: str | None) -> None:
    log = tmp_path / "xff.log"
    log.write_text(_xff_line(peer, xff) + "\n", encoding="utf-8")
    hits, stats = read_hits([str(log)], proxy_cfg)
    assert stats.format == "nginx_xff"
    assert check(hits, HITS_SCHEMA) == []
    assert hits.select("client_ip", "peer_ip").rows() == [(client, peer_ip)]


def test_without_trusted_proxies_xff_is_only_recorded(cfg: Config) -> None:
    hits, _ = read_hits([str(LOGS / "nginx_xff.log")], cfg, format="nginx_xff")
    assert hits["client_ip"].to_list() == ["10.0.0.5", "10.0.0.5", "198.51.100.9", "10.0.0.5"]
    assert hits["peer_ip"].to_list() == [None] * 4
    assert hits["x_forwarded_for"].to_list() == [
        "203.0.113.7", "1.1.1.1, 198.51.100.2, 10.1.1.1", "203.0.113.7", None
    ]


def test_trusted_proxies_on_a_whole_file(proxy_cfg: Config) -> None:
    hits, _ = read_hits([str(LOGS / "nginx_xff.log")], proxy_cfg)
    assert hits.select("line_no", "client_ip", "peer_ip").rows() == [
        (1, "203.0.113.7", "10.0.0.5"),
        (2, "198.51.100.2", "10.0.0.5"),
        (3, "198.51.100.9", None),
        (4, "10.0.0.5", None),
    ]


def _cloudflare_cfg(tmp_path: Path, log_format: str | None = None) -> Config:
    path = tmp_path / "cdn.yaml"
    fmt = (f"  format: cdn\n  formats:\n    cdn: {{type: nginx, log_format: '{log_format}'}}\n"
           if log_format else "  format: nginx_xff\n")
    path.write_text(f"ingest:\n{fmt}  trusted_proxies: [cloudflare, 10.0.0.0/8]\n", encoding="utf-8")
    return load_config(path)


def test_trusted_proxies_named_by_their_range_source(tmp_path: Path) -> None:
    """``trusted_proxies: [cloudflare]`` means the networks Cloudflare publishes (loaded with
    ``ranges update``), so the list keeps up with its edges; names and CIDRs mix."""
    from botguard.ranges import RangeSet

    ranges = RangeSet({"cloudflare": ["173.245.48.0/20", "2400:cb00::/32"]}, kinds={"cloudflare": "cdn"})
    log = tmp_path / "cdn.log"
    log.write_text("\n".join([
        _xff_line("173.245.48.9", "203.0.113.7"),                 # an edge: the visitor it names
        _xff_line("2400:cb00::1", "198.51.100.4, 173.245.48.20"),  # the chain's own edge hop is skipped
        _xff_line("10.0.0.5", "192.0.2.9"),                       # the CIDR still counts
        _xff_line("198.51.100.9", "203.0.113.7"),                 # not an edge: its claim is ignored
        _xff_line("173.245.64.1", "203.0.113.7"),                 # just outside the published /20
    ]) + "\n", encoding="utf-8")
    hits, _ = read_hits([str(log)], _cloudflare_cfg(tmp_path), ranges=ranges)
    assert hits.select("client_ip", "peer_ip").rows() == [
        ("203.0.113.7", "173.245.48.9"),
        ("198.51.100.4", "2400:cb00::1"),
        ("192.0.2.9", "10.0.0.5"),
        ("198.51.100.9", None),
        ("173.245.64.1", None),
    ]


def test_a_cdn_header_names_the_visitor_only_behind_a_trusted_edge(tmp_path: Path) -> None:
    """$http_cf_connecting_ip (or True-Client-IP, Fastly-Client-IP) is the CDN's word for the
    visitor: believed from its edges, ignored from anyone else who sends the header."""
    from botguard.ranges import RangeSet

    ranges = RangeSet({"cloudflare": ["173.245.48.0/20"]}, kinds={"cloudflare": "cdn"})
    cfg = _cloudflare_cfg(tmp_path, '$remote_addr - $remote_user [$time_local] "$request" $status '
                          '$body_bytes_sent "$http_referer" "$http_user_agent" $http_cf_connecting_ip')
    line = '{} - - [10/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" {}'
    log = tmp_path / "cf.log"
    log.write_text("\n".join([line.format("173.245.48.9", "2001:db8::7"), line.format("198.51.100.9", "203.0.113.7"),
                              line.format("173.245.48.9", "-")]) + "\n", encoding="utf-8")
    hits, stats = read_hits([str(log)], cfg, ranges=ranges)
    assert stats.rejected == 0
    assert hits.select("client_ip", "peer_ip").rows() == [
        ("2001:db8::7", "173.245.48.9"), ("198.51.100.9", None), ("173.245.48.9", None)]


def test_a_named_proxy_source_that_is_not_loaded_stops_the_run(tmp_path: Path) -> None:
    """Trusting nobody would make every visitor the edge: the run stops and says what to do."""
    from botguard.errors import InputError
    from botguard.ranges import RangeSet

    log = tmp_path / "cdn.log"
    log.write_text(_xff_line("173.245.48.9", "203.0.113.7") + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"trusted_proxies names cloudflare, whose ranges are not loaded.*"
                                         r"botguard ranges update"):
        read_hits([str(log)], _cloudflare_cfg(tmp_path), ranges=RangeSet({}))


def test_an_unknown_proxy_source_name_is_a_located_config_error(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("ingest:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - cloudfare\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:4: ingest.trusted_proxies[1]: expected an IP address, a CIDR or one of "
                              "the range sources (googlebot, ")
    assert "cloudflare" in problem and problem.endswith("got 'cloudfare'")


# --------------------------------------------------------------------------- round trip
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_SAFE_PATH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-._~%"
_SAFE_QUERY = _SAFE_PATH + "=&+,;:@"


@st.composite
def _addresses(draw: st.DrawFn) -> tuple[str, str]:
    """(as written in the log, as expected after normalization)."""
    kind = draw(st.sampled_from(["v4", "v6", "v6_exploded", "v4_mapped"]))
    if kind == "v4":
        a = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        return str(a), str(a)
    if kind == "v4_mapped":
        a = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        return f"::ffff:{a}", str(a)
    b = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    expected = str(b.ipv4_mapped) if b.ipv4_mapped is not None else str(b)
    return (b.exploded if kind == "v6_exploded" else str(b)), expected


_free_text = st.text(
    st.characters(codec="utf-8", exclude_characters='"\\', exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=40,
)


@st.composite
def _hits(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    written_ip, ip = draw(_addresses())
    when = draw(st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2090, 12, 31))).replace(microsecond=0)
    offset_min = draw(st.integers(-12 * 60, 14 * 60))
    local = when + timedelta(minutes=offset_min)
    sign = "+" if offset_min >= 0 else "-"
    stamp = (f"{local.day:02d}/{_MONTHS[local.month - 1]}/{local.year}:{local:%H:%M:%S} "
             f"{sign}{abs(offset_min) // 60:02d}{abs(offset_min) % 60:02d}")
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND"]))
    path = "/" + draw(st.text(st.sampled_from(_SAFE_PATH), max_size=30))
    query = draw(st.none() | st.text(st.sampled_from(_SAFE_QUERY), min_size=1, max_size=30))
    protocol = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]))
    status = draw(st.integers(100, 599))
    size = draw(st.none() | st.integers(0, 2**40))
    referer = draw(st.none() | _free_text.filter(lambda s: s not in ("", "-")))
    agent = draw(st.none() | _free_text.filter(lambda s: s not in ("", "-")))
    target = path + (f"?{query}" if query is not None else "")
    line = (f'{written_ip} - - [{stamp}] "{method} {target} {protocol}" {status} '
            f'{"-" if size is None else size} "{referer or "-"}" "{agent or "-"}"')
    expected = {
        "ts": when.replace(tzinfo=UTC),
        "client_ip": ip,
        "method": method,
        "path": path,
        "query": query,
        "protocol": protocol,
        "status": status,
        "bytes": size,
        "referer": referer,
        "user_agent": agent,
    }
    return line, expected


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hits(), min_size=1, max_size=25))
def test_combined_round_trip(cfg: Config, batch: list[tuple[str, dict[str, Any]]]) -> None:
    lines = [line for line, _ in batch]
    hits, rejects = parse("combined", lines, cfg)
    assert rejects.is_empty(), rejects.to_dicts()
    assert hits["line_no"].to_list() == list(range(1, len(batch) + 1))
    got = hits.select(list(batch[0][1])).to_dicts()
    assert got == [expected for _, expected in batch]


def test_round_trip_sample_offsets(cfg: Config) -> None:
    """A fixed example of the property, readable when the property fails."""
    when = datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30)))
    line = f'2001:db8::42 - - [{when:%d/%b/%Y:%H:%M:%S %z}] "GET /x HTTP/1.1" 200 1 "-" "ua"'
    hits, _ = parse("combined", [line], cfg)
    assert hits["ts"].to_list() == [when.astimezone(UTC)]


# --------------------------------------------------------------------------- bytes (CSV) path
_GOOD = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" "ua/1"'

_fragments = st.sampled_from([
    " ", "  ", '"', '""', "\\", '\\"', "\\\\", "[", "]", "-", "/", "?", "x", "é", "\t",
    "192.0.2.9", "::1", "GET", "200", "0", "+0000]", "[10/Oct/2023:13:55:36", '"-"',
])


@st.composite
def _nasty_line(draw: st.DrawFn) -> str:
    """A well-formed combined line with random damage, or random fragments."""
    if draw(st.booleans()):
        return "".join(draw(st.lists(_fragments, max_size=14)))
    line = _GOOD
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 3))
        line = line[:pos] + draw(_fragments) + line[pos + cut:]
    return line


_ESCAPED = _GOOD.replace('"ua/1"', '"ua \\"q\\""')


def _per_line(parser: Any, lines: list[str]) -> list[tuple[str, Any]]:
    """What the bytes path made of each line: its hit row or its reject reason, by line."""
    got = parser.parse_bytes(_chunk(lines), "UTC")
    assert got is not None
    hits, rejects = got
    assert check(hits, HITS_SCHEMA) == [] and check(rejects, REJECTS_SCHEMA) == []
    assert sorted([*hits["line_no"], *rejects["line_no"]]) == list(range(1, len(lines) + 1))
    assert rejects["line"].to_list() == [lines[i - 1] for i in rejects["line_no"]]
    out: dict[int, tuple[str, Any]] = {}
    for r in hits.iter_rows(named=True):
        out[r.pop("line_no")] = ("hit", r)
    for no, reason in rejects.select("line_no", "reason").iter_rows():
        out[no] = ("reject", reason)
    return [out[i] for i in range(1, len(lines) + 1)]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_nasty_line(), min_size=1, max_size=12), st.integers(0, 20))
def test_bytes_path_reads_a_line_the_same_in_any_batch(cfg: Config, damaged: list[str], n_good: int) -> None:
    """Whatever a line contains, what the CSV fast path makes of it depends on the line alone:
    the same together as one by one, and the same when an escaped line in the batch sends it
    down the slower per-line route."""
    parser = get_parser("combined", cfg)
    lines = [ln for ln in [_GOOD] * n_good + damaged if "\n" not in ln and "\r" not in ln]
    together = _per_line(parser, lines)
    assert together == [_per_line(parser, [ln])[0] for ln in lines]
    assert together == _per_line(parser, [*lines, _ESCAPED])[:-1]


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hits(), min_size=1, max_size=25), st.booleans())
def test_bytes_path_equals_regexes_on_well_formed_lines(
    cfg: Config, batch: list[tuple[str, dict[str, Any]]], with_escaped: bool
) -> None:
    lines = [line for line, _ in batch] + ([_ESCAPED] if with_escaped else [])
    parse("combined", lines, cfg)  # asserts both paths agree


def test_unclosed_quotes_are_found_without_a_probe_each(cfg: Config, count_calls: Any) -> None:
    """A line left with an odd number of quotes (a truncated agent) cannot be read alone by
    the CSV reader. Many of them in a chunk still cost a couple of reads, not two per halving
    for each, and every line parses as it does on its own."""
    from botguard.parsers import logformat

    parser = get_parser("combined", cfg)
    lines = [_GOOD.replace("/a?", f"/p{i}?") for i in range(400)]
    for i in range(3, 400, 10):
        lines[i] = lines[i][:-1]  # the agent's closing quote lost
    reads = count_calls(logformat, "_read_fields")
    together = _per_line(parser, lines)
    assert reads.n <= 3
    reads.undo()
    assert together[:40] == [_per_line(parser, [ln])[0] for ln in lines[:40]]
    # The regexes still read a truncated agent.
    assert [(kind, row["path"], row["user_agent"]) for kind, row in together] == [("hit", f"/p{i}", "ua/1") for i in range(400)]


def test_an_escaped_quote_costs_its_chunk_one_more_read(cfg: Config, count_calls: Any) -> None:
    """Apache escapes a quote inside an agent as \\": the CSV reader cannot be trusted with the
    chunk whole, so the escaped line goes to the regexes and the chunk is read once without
    it. Its other lines are plain (every quote opening or closing a field): not probed."""
    from botguard.parsers import logformat

    parser = get_parser("combined", cfg)
    lines = [_GOOD.replace("/a?", f"/p{i}?") for i in range(400)]
    lines[7] = _ESCAPED
    reads = count_calls(logformat, "_read_fields")
    together = _per_line(parser, lines)
    assert reads.n == 1
    assert together[7] == _per_line(parser, [_ESCAPED])[0] and together[7][1]["user_agent"] == 'ua "q"'
    assert [row["path"] for kind, row in together] == [f"/p{i}" if i != 7 else "/a" for i in range(400)]


def test_escapes_among_many_hex_escaped_bytes(cfg: Config) -> None:
    """nginx writes each byte of a non-ASCII URL as \\xNN: a chunk full of backslashes that are
    not quote escapes, with one that is, parses as the line path does."""
    hexed = _GOOD.replace("/a?", "/\\xD0\\xBA\\xD0\\xB0" * 8 + "/a?")
    lines = [hexed] * 3000 + [_ESCAPED] + [hexed] * 10
    hits, rejects = parse("combined", lines, cfg)
    assert len(hits) == 3011 and rejects.is_empty()
    assert hits["user_agent"][3000] == 'ua "q"' and hits["path"][0].startswith("/\\xD0\\xBA")


def test_a_chunk_of_stray_quotes_goes_to_the_regexes_within_a_bounded_probe(cfg: Config, count_calls: Any) -> None:
    """Stray quotes the probe must find one by one (an even number of them: a quote glued to
    the agent's end), on one line in ten: the CSV path gives up after a bounded number of
    reads and the regexes read the chunk, which parses the lines as the line path does."""
    from botguard.parsers import logformat

    parser = get_parser("combined", cfg)
    lines = [_GOOD.replace("/a?", f"/p{i}?") for i in range(2000)]
    for i in range(5, 2000, 10):
        lines[i] += "x"
    reads = count_calls(logformat, "_read_fields")
    assert parser.parse_bytes(_chunk(lines), "UTC") is None  # type: ignore[attr-defined]
    assert reads.n <= logformat._PROBE_READS + 2  # the chunk read whole, then with sentinels
    reads.undo()
    hits, rejects = parse("combined", lines, cfg)
    assert sorted([*hits["line_no"], *rejects["line_no"]]) == list(range(1, 2001))
    good = hits.filter(pl.col("line_no") % 10 != 6)
    assert len(good) == 1800 and good["path"].to_list() == [f"/p{i}" for i in range(2000) if i % 10 != 5]


def test_bytes_path_takes_ordinary_and_mixed_chunks(cfg: Config) -> None:
    parser = get_parser("combined", cfg)
    escaped = _GOOD.replace('"ua/1"', '"ua \\"q\\""')
    for lines in ([_GOOD] * 50, [_GOOD] * 50 + [escaped, "garbage", ""]):
        got = parser.parse_bytes(_chunk(lines), "UTC")  # type: ignore[attr-defined]
        assert got is not None
        hits, rejects = got
        assert len(hits) == 51 if len(lines) > 50 else 50
        assert rejects["reason"].to_list() == (["no_match", "no_match"] if len(lines) > 50 else [])


def test_bytes_path_declines_what_it_cannot_read(cfg: Config, tmp_path: Path) -> None:
    parser = get_parser("combined", cfg)
    crlf = Chunk("x", 1, (_GOOD + "\r\n").encode(), 1)
    assert parser.parse_bytes(crlf, "UTC") is None  # type: ignore[attr-defined]
    latin1 = Chunk("x", 1, _GOOD.replace("ua/1", "caf\xe9").encode("latin-1") + b"\n", 1)
    assert parser.parse_bytes(latin1, "UTC") is None  # type: ignore[attr-defined]
    glued = _cfg_with_formats(tmp_path, 'ingest:\n  formats:\n    v:\n      type: nginx\n'
                              '      log_format: \'$host:$server_port $remote_addr [$time_local] "$request" $status\'\n')
    assert get_parser("v", glued).parse_bytes(_chunk(["x"]), "UTC") is None  # type: ignore[attr-defined]


def test_json_request_line_and_query_logged_apart(tmp_path: Path) -> None:
    """nginx escape=json logs "$request" whole; CDNs log the path and the query apart."""
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n"
        "  formats:\n"
        "    whole:\n"
        "      type: json\n"
        "      fields: {ts: t, client_ip: ip, request: request, status: s}\n"
        "    apart:\n"
        "      type: json\n"
        "      fields: {ts: t, client_ip: ip, method: m, path: p, query: q, status: s}\n"
    ))
    hits, rejects = parse("whole", [
        '{"t": 1700000000, "ip": "192.0.2.1", "request": "GET /p/1?sku=9 HTTP/1.1", "s": 200}',
        '{"t": 1700000001, "ip": "192.0.2.1", "request": "\\u0016\\u0003\\u0001", "s": 400}',
    ], cfg)
    assert hits.select("method", "path", "query", "protocol").rows() == [
        ("GET", "/p/1", "sku=9", "HTTP/1.1"), (None, "\x16\x03\x01", None, None),
    ]
    assert rejects.is_empty()
    hits, _ = parse("apart", [
        '{"t": 1700000000, "ip": "192.0.2.1", "m": "GET", "p": "/search", "q": "page=2&sort=price", "s": 200}',
        '{"t": 1700000001, "ip": "192.0.2.1", "m": "GET", "p": "/a?x=1", "q": "x=1", "s": 200}',
        '{"t": 1700000002, "ip": "192.0.2.1", "m": "GET", "p": "/b", "q": "", "s": 200}',
    ], cfg)
    assert hits.select("path", "query").rows() == [("/search", "page=2&sort=price"), ("/a", "x=1"), ("/b", None)]


def test_json_field_map_with_an_unknown_column_is_a_config_error(tmp_path: Path) -> None:
    from botguard.config.models import JSON_FIELD_KEYS
    from botguard.parsers.jsonlines import _JSON_TO_CAPTURE

    assert set(JSON_FIELD_KEYS) == {"ts", *_JSON_TO_CAPTURE}
    f = tmp_path / "c.yaml"
    f.write_text("ingest:\n  formats:\n    app:\n      type: json\n      fields: {ts: t, client_ip: ip, useragent: ua}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = "\n".join(exc.value.problems)
    assert "ingest.formats.app" in msg and "unknown column 'useragent'" in msg and "user_agent" in msg


def test_json_timestamps_in_nginx_local_form(tmp_path: Path) -> None:
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n  formats:\n    app:\n      type: json\n      fields: {ts: t, client_ip: ip, path: p, status: s}\n"
    ))
    hits, rejects = parse("app", [
        '{"t": "14/Nov/2023:23:13:20 +0100", "ip": "192.0.2.1", "p": "/a", "s": 200}',
        '{"t": "2023-11-14T22:13:21Z", "ip": "192.0.2.1", "p": "/b", "s": 200}',
    ], cfg)
    assert rejects.is_empty()
    assert hits["ts"].to_list() == [ts(2023, 11, 14, 22, 13, 20), ts(2023, 11, 14, 22, 13, 21)]


def test_ingress_nginx_default_format_takes_the_fast_path(tmp_path: Path) -> None:
    """Kubernetes ingress-nginx's default log_format, bracketed upstream names included: the
    CSV path reads it (and gives what the regexes give)."""
    fmt = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
           '"$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] '
           '$upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id')
    cfg = _cfg_with_formats(tmp_path, f"ingest:\n  formats:\n    k8s:\n      type: nginx\n      log_format: '{fmt}'\n")
    lines = [
        '203.0.113.7 - - [02/Mar/2026:10:00:00 +0000] "GET /p/1?x=1 HTTP/1.1" 200 512 "https://shop.example/" '
        '"Mozilla/5.0 (X11)" 420 0.012 [shop-web-80] [] 10.1.2.3:8080 512 0.011 200 4f1c9e',
        '203.0.113.8 - - [02/Mar/2026:10:00:01 +0000] "GET / HTTP/2.0" 404 0 "-" "curl/8.4.0" 90 0.001 '
        '[shop web] [] - - - - 77aa00',
    ]
    parser = get_parser("k8s", cfg)
    assert parser.parse_bytes(_chunk(lines), "UTC") is not None  # type: ignore[attr-defined]
    hits, rejects = parse("k8s", lines, cfg)
    assert hits.select("client_ip", "path", "query", "status", "bytes", "user_agent", "request_time_s").rows() == [
        ("203.0.113.7", "/p/1", "x=1", 200, 512, "Mozilla/5.0 (X11)", 0.012),
        ("203.0.113.8", "/", None, 404, 0, "curl/8.4.0", 0.001),  # a space in brackets: the regexes read it
    ]
    assert rejects.is_empty()


def test_url_encoded_agents_are_decoded(tmp_path: Path) -> None:
    """Akamai DataStream logs the agent URL-encoded: decoded, it is a browser again."""
    cfg = _cfg_with_formats(tmp_path, (
        "ingest:\n  formats:\n    ds2:\n      type: json\n      fields: {ts: t, client_ip: ip, path: p, status: s, user_agent: ua}\n"
    ))
    hits, _ = parse("ds2", [
        '{"t": 1700000000, "ip": "192.0.2.1", "p": "/", "s": 200, "ua": "Mozilla%2F5.0%20(Windows%20NT%2010.0)%20Firefox%2F121.0"}',
        '{"t": 1700000001, "ip": "192.0.2.1", "p": "/", "s": 200, "ua": "Mozilla/5.0 (X11) 100%25 real %2F"}',
    ], cfg)
    assert hits["user_agent"].to_list() == ["Mozilla/5.0 (Windows NT 10.0) Firefox/121.0", "Mozilla/5.0 (X11) 100%25 real %2F"]


def test_haproxy_httplog_through_syslog(cfg: Config) -> None:
    lines = [
        "Mar  9 22:00:00 lb1 haproxy[2211]: 52.24.13.22:14425 [09/Mar/2024:22:00:00.123] fe_https~ be_shop/web3 "
        '0/0/1/869/870 200 52777 - - ---- 120/110/3/1/0 0/0 {Go-http-client/1.1|} "GET /api/v1/price?sku=121 HTTP/1.1"',
        "Mar 10 07:15:02 lb1 haproxy[2211]: [2001:db8::7]:50112 [10/Mar/2024:07:15:02.999] fe_https~ be_shop/web1 "
        '0/0/0/12/12 404 512 - - ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11)|https://shop.example/} "GET /p/9 HTTP/2.0"',
    ]
    hits, rejects = parse("haproxy", lines, cfg)
    assert rejects.is_empty()
    assert hits.select("ts", "client_ip", "method", "path", "query", "status", "bytes", "referer", "user_agent").rows() == [
        (ts(2024, 3, 9, 22, 0, 0), "52.24.13.22", "GET", "/api/v1/price", "sku=121", 200, 52777, None, "Go-http-client/1.1"),
        (ts(2024, 3, 10, 7, 15, 2), "2001:db8::7", "GET", "/p/9", None, 404, 512, "https://shop.example/", "Mozilla/5.0 (X11)"),
    ]
    assert sniff(_lines(lines).collect(), cfg).name == "haproxy"


def test_nginx_hex_escapes_are_decoded_unless_they_hide_control_bytes(cfg: Config) -> None:
    lines = [
        r'203.0.113.7 - - [02/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "https://shop.example/?q=\xC3\xA9t\xC3\xA9" "Mozilla/5.0 \x22quoted\x22"',
        r'203.0.113.8 - - [02/Mar/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "evil\x1B[31m"',
    ]
    hits, rejects = parse("combined", lines, cfg)
    assert rejects.is_empty()
    assert hits.select("referer", "user_agent").rows() == [
        ("https://shop.example/?q=été", 'Mozilla/5.0 "quoted"'),
        (None, r"evil\x1B[31m"),
    ]
