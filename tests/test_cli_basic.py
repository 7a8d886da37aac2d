"""CLI basics: version, help for every command, parse, config check/show, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from botguard import __version__
from botguard.cli.app import app
from botguard.config import load_config
from botguard.ingest import read_hits
from botguard.schema import HITS_SCHEMA, check

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
runner = CliRunner()


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of the Typer app, as argv prefixes."""
    out: list[list[str]] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        out.append(prefix)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _command_paths()


def _combined_log(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "access.log"
    lines = [
        f'192.0.2.{i} - - [10/Oct/2023:13:55:{i:02d} +0000] "GET /p/{i} HTTP/1.1" 200 {i} "-" "agent {i % 3}"'
        for i in range(1, 40)
    ]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- version / help
def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"botguard {__version__}"


def test_python_m_botguard_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botguard", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"botguard {__version__}"


def test_console_script_output_and_exit_codes(tmp_path: Path) -> None:
    """``main`` ends the process with ``os._exit`` after a command: what the command printed
    still arrives whole, and the exit code is the command's."""
    log = _combined_log(tmp_path)
    run = [sys.executable, "-m", "botguard"]
    ok = subprocess.run([*run, "parse", str(log), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["parse"]["parsed"] == 39
    missing = subprocess.run([*run, "parse", str(tmp_path / "nope.log")], capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2
    assert "nope.log" in missing.stderr
    wrong = subprocess.run([*run, "parse", str(log), "--format", "jsonl"], capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 1
    assert "jsonl" in wrong.stderr


def test_quick_exit_runs_exit_handlers_and_falls_back_while_threads_live(monkeypatch: pytest.MonkeyPatch) -> None:
    import atexit
    import os
    import threading

    from botguard.cli import app as cli

    class Exited(Exception):
        pass

    def fake_exit(status: int) -> None:
        raise Exited(status)

    monkeypatch.setattr(os, "_exit", fake_exit)
    ran: list[str] = []
    # The real handlers belong to this test process (pytest's, multiprocessing's): stand-in.
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: ran.append("handlers"))
    with pytest.raises(Exited) as done:
        cli._quick_exit(3)
    assert done.value.args == (3,)
    assert ran == ["handlers"]  # the exit handlers run before the quick exit
    with pytest.raises(Exited) as done:
        cli._quick_exit(None)
    assert done.value.args == (0,)
    # A message is printed by the normal exit; so is any exit while another thread runs.
    with pytest.raises(SystemExit) as normal:
        cli._quick_exit("bad config")
    assert normal.value.code == "bad config"
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with pytest.raises(SystemExit) as normal:
            cli._quick_exit(2)
        assert normal.value.code == 2
    finally:
        release.set()
        worker.join()
    assert ran == ["handlers", "handlers"]


def test_command_tree_is_complete() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"parse", "config", "config check", "config show"} <= names
    assert len(COMMANDS) > 5


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda p: " ".join(p) or "<root>")
def test_help_works_for_every_command(argv: list[str]) -> None:
    result = runner.invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    if argv:
        assert argv[-1] in result.stdout
    # every command is documented
    assert len(result.stdout.strip().splitlines()) >= 3


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output
    assert "parse" in result.output


# --------------------------------------------------------------------------- parse
def test_parse_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope-access.log"
    result = runner.invoke(app, ["parse", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.output


def test_parse_wrong_format_is_refused_with_the_bad_line() -> None:
    log = LOGS / "jsonl.log"
    first = log.read_text(encoding="utf-8").splitlines()[0]
    result = runner.invoke(app, ["parse", str(log), "--format", "common"])
    assert result.exit_code == 1, result.output
    assert "'common'" in result.stderr
    assert first[:60] in result.stderr
    assert f"{log}:1" in result.stderr


def test_parse_unknown_format_lists_known_formats() -> None:
    result = runner.invoke(app, ["parse", str(LOGS / "combined.log"), "--format", "nosuch"])
    assert result.exit_code == 2
    assert "nosuch" in result.stderr
    for name in ("combined", "common", "vcombined", "alb", "cloudfront", "cloudflare", "caddy", "w3c", "iliou", "jsonl"):
        assert name in result.stderr


def test_parse_json_output_has_counts(tmp_path: Path) -> None:
    log = _combined_log(tmp_path, "not a log line\n")
    result = runner.invoke(app, ["parse", str(log), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    parse = data["parse"]
    assert parse["format"] == "combined" and parse["format_sniffed"] is True
    assert (parse["lines"], parse["parsed"], parse["rejected"]) == (40, 39, 1)
    assert parse["rejected_by_reason"] == {"no_match": 1}
    assert parse["sources"] == [str(log)]
    assert parse["first_ts"] == "2023-10-10T13:55:01+00:00"
    assert data["distinct_clients"] == 39


def test_parse_output_parquet_matches_hits_schema(tmp_path: Path) -> None:
    log = _combined_log(tmp_path)
    out = tmp_path / "hits.parquet"
    result = runner.invoke(app, ["parse", str(log), "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert check(frame, HITS_SCHEMA) == []
    expected, _ = read_hits([str(log)], load_config())
    assert frame.equals(expected)
    # no temp file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access.log", "hits.parquet"]


def test_parse_output_parquet_for_empty_input(tmp_path: Path) -> None:
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    out = tmp_path / "hits.parquet"
    result = runner.invoke(app, ["parse", str(log), "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.is_empty() and check(frame, HITS_SCHEMA) == []


def test_parse_rejects_file_keeps_bad_lines_verbatim(tmp_path: Path) -> None:
    bad1 = 'garbage "with quotes"\tand a tab'
    bad2 = '192.0.2.1 - - [99/Oct/2023:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"'
    log = _combined_log(tmp_path, f"{bad1}\n{bad2}\n")
    rejects = tmp_path / "rejects.tsv"
    config = tmp_path / "c.yaml"
    config.write_text("ingest:\n  max_error_ratio: 0.5\n", encoding="utf-8")
    result = runner.invoke(app, ["parse", str(log), "--rejects", str(rejects), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert rejects.read_text(encoding="utf-8").splitlines() == [
        f"{log}\t40\tno_match\t{bad1}",
        f"{log}\t41\tbad_timestamp\t{bad2}",
    ]


def test_parse_strict_stops_at_first_bad_line(tmp_path: Path) -> None:
    log = _combined_log(tmp_path, "not a log line\n")
    result = runner.invoke(app, ["parse", str(log), "--strict"])
    assert result.exit_code == 2
    assert f"{log}:40" in result.stderr and "not a log line" in result.stderr


def test_parse_stdin(tmp_path: Path) -> None:
    text = (LOGS / "combined.log").read_text(encoding="utf-8")
    result = runner.invoke(app, ["parse", "-", "--json"], input=text.encode())
    assert result.exit_code == 0, result.output
    parse = json.loads(result.stdout)["parse"]
    assert (parse["parsed"], parse["sources"]) == (3, ["<stdin>"])


def test_parse_summary_table(tmp_path: Path) -> None:
    log = _combined_log(tmp_path)
    result = runner.invoke(app, ["parse", str(log)])
    assert result.exit_code == 0, result.output
    assert "combined" in result.output and "39" in result.output


def test_refusal_message_with_markup_like_text(tmp_path: Path) -> None:
    """Quoted log lines are shown verbatim, never read as rich markup ('[/]' used to crash)."""
    log = tmp_path / "m.log"
    log.write_text("bad line with [/] and [bold] inside\n", encoding="utf-8")
    result = runner.invoke(app, ["parse", str(log), "--format", "combined"])
    assert result.exit_code == 1
    assert "bad line with [/] and [bold] inside" in result.stderr


# --------------------------------------------------------------------------- config
def test_config_check_ok(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("session:\n  gap: 10m\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0
    assert "OK" in result.output


def test_config_check_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "session:\n"
        "  gap: soon\n"
        "  colour: red\n"
        "catalogue:\n"
        "  product_patterns: ['(unclosed']\n"
        "ingest:\n"
        "  trusted_proxies: [10.0.0.0/33]\n"
        "policy:\n"
        "  thresholds: {block: 0.1, challenge: 0.9}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    err = result.stderr
    for expected in (
        f"{bad}:2: session.gap: expected a duration like '30m', got 'soon'",
        f"{bad}:3: session.colour: unknown key (allowed: gap, ipv6_prefix, key, out_of_order_tolerance)",
        f"{bad}:5: catalogue.product_patterns[0]: invalid regular expression '(unclosed'",
        f"{bad}:7: ingest.trusted_proxies[0]: expected an IP address or CIDR, got '10.0.0.0/33'",
        f"{bad}:9: policy.thresholds: expected block >= challenge >= monitor",
    ):
        assert expected in err, err
    assert err.count("error:") == 5
    assert "Traceback" not in result.output


def test_config_check_shows_bracketed_values_verbatim(tmp_path: Path) -> None:
    """'[z-a]' used to be swallowed as a rich style tag."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalogue:\n  product_patterns: ['[z-a]']\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert "invalid regular expression '[z-a]'" in result.stderr


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr and "not found" in result.stderr


def test_config_check_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("session: [\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:" in result.stderr and "invalid YAML" in result.stderr


def test_config_show_prints_yaml_that_loads_back(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["session"]["gap"] == "30m"
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout, encoding="utf-8")
    assert load_config(shown) == load_config()


def test_config_show_with_file_reflects_the_override(tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("session:\n  gap: 45m\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "show", str(user)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["session"]["gap"] == "45m"
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout, encoding="utf-8")
    assert load_config(shown) == load_config(user)


def test_config_show_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("session:\n  gap: soon\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "show", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "session.gap" in result.stderr


def test_refusal_of_a_w3c_log_with_other_columns_suggests_w3c(tmp_path: Path) -> None:
    log = tmp_path / "u_ex231010.log"
    log.write_text(
        "#Fields: date time cs-method cs-uri-stem c-ip cs(User-Agent) sc-status\n"
        "2023-10-10 13:55:36 GET /products/1 203.0.113.7 Mozilla/5.0+(X11) 200\n"
        "2023-10-10 13:55:37 GET / 203.0.113.8 curl/8.4.0 404\n",
        encoding="utf-8",
    )
    refused = runner.invoke(app, ["parse", str(log)])
    assert refused.exit_code == 1
    assert "try --format w3c" in refused.stderr
    parsed = runner.invoke(app, ["parse", str(log), "--format", "w3c", "--json"])
    assert parsed.exit_code == 0, parsed.output
    assert '"parsed": 2' in parsed.stdout


def test_refusal_of_json_no_format_knows_says_so_and_how_to_map_it(tmp_path: Path) -> None:
    log = tmp_path / "cdn.jsonl"
    log.write_text('{"when": "2026-03-02T10:00:00Z", "addr": "198.51.100.1", "uri": "/p/1", "code": 200}\n' * 20, encoding="utf-8")
    refused = runner.invoke(app, ["parse", str(log)])
    assert refused.exit_code == 1
    assert "no built-in format matched the log" in refused.stderr and "20 of 20 lines (100%) rejected" in refused.stderr
    assert "the lines are JSON: map its keys under ingest.formats" in refused.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  formats:\n    mine:\n      type: json\n      fields: {ts: when, client_ip: addr, path: uri, status: code}\n")
    parsed = runner.invoke(app, ["parse", str(log), "-c", str(cfg), "--format", "mine", "--json"])
    assert parsed.exit_code == 0, parsed.output
    assert '"parsed": 20' in parsed.stdout


def test_export_names_the_files_it_wrote(tmp_path: Path, fixtures_dir: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["analyze", str(fixtures_dir / "shop" / "access.log"), "--out", str(out), "--quiet", "--force"],
                        env={"BOTGUARD_DATA": str(tmp_path / "ranges")})
    assert res.exit_code == 0, res.output
    target = tmp_path / "waf.json"
    res = runner.invoke(app, ["export", "--from", str(out), "--format", "aws-waf", "--output", str(target)])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in tmp_path.glob("waf*.json"))
    assert written == ["waf.ipv4.json", "waf.ipv6.json"]
    assert all(str(tmp_path / name) in res.stderr + res.stdout for name in written)


def test_a_column_empty_on_every_line_is_named(tmp_path: Path) -> None:
    """A misspelt JSON key leaves its column empty without a single reject: say so."""
    log = tmp_path / "app.jsonl"
    log.write_text("".join(
        f'{{"t": {1700000000 + i}, "ip": "198.51.100.{i % 7 + 1}", "m": "GET", "u": "/p/{i}", "code": 200, "ua": "Mozilla/5.0"}}\n'
        for i in range(50)
    ), encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  formats:\n    app:\n      type: json\n"
                   "      fields: {ts: t, client_ip: ip, method: m, path: u, status: stauts, user_agent: ua}\n")
    res = runner.invoke(app, ["parse", str(log), "-c", str(cfg), "--format", "app", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parse"]["never_logged"] == ["status", "referer", "bytes"]
    out = tmp_path / "o"
    res = runner.invoke(app, ["analyze", str(log), "-c", str(cfg), "--format", "app", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    warnings = json.loads((out / "summary.json").read_text())["warnings"]
    assert any(w.startswith("status, referer, bytes are empty on every line: the format (app)") for w in warnings)


def test_a_common_log_is_sniffed_as_common(fixtures_dir: Path) -> None:
    res = runner.invoke(app, ["parse", str(fixtures_dir / "logs" / "common.log"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parse"]["format"] == "common"


def test_an_empty_run_leaves_the_exports_as_they_were(tmp_path: Path, fixtures_dir: Path) -> None:
    """A cron run on an empty (or rotated-away) log must not empty the list nginx loads."""
    deny = tmp_path / "deny.conf"
    env = {"BOTGUARD_DATA": str(tmp_path / "ranges")}
    res = runner.invoke(app, ["analyze", str(fixtures_dir / "shop" / "access.log"), "--out", str(tmp_path / "a"),
                              "--quiet", "--force", "--export", f"nginx-deny={deny}"], env=env)
    assert res.exit_code == 0, res.output
    before = deny.read_text()
    assert "deny " in before
    empty = tmp_path / "empty.log"
    empty.write_text("")
    res = runner.invoke(app, ["analyze", str(empty), "--out", str(tmp_path / "b"), "--quiet", "--export", f"nginx-deny={deny}"], env=env)
    assert res.exit_code == 0, res.output
    assert deny.read_text() == before
    assert "no line was read: the exports were left as they were" in json.loads((tmp_path / "b" / "summary.json").read_text())["warnings"]


def test_a_refusal_names_the_reason_and_what_to_check(tmp_path: Path) -> None:
    """Apache with HostnameLookups: the format is right, the client field is a host name."""
    log = tmp_path / "access.log"
    good = '203.0.113.7 - - [02/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
    bad = 'host-{i}.example.net - - [02/Mar/2026:10:00:0{d} +0000] "GET /p HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
    log.write_text(good * 3 + "".join(bad.format(i=i, d=i % 10) for i in range(30)), encoding="utf-8")
    res = runner.invoke(app, ["parse", str(log), "--format", "combined"])
    assert res.exit_code == 1
    assert "30 of 33 lines (91%) did not parse as 'combined' (bad_client_ip: 30)" in res.stderr
    assert "HostnameLookups" in res.stderr


def test_rejects_are_counted_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good = '203.0.113.7 - - [02/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n'
    Path("a.log").write_text(good * 200, encoding="utf-8")
    Path("b.log").write_text(good * 200 + "not a log line\n" * 3, encoding="utf-8")
    res = runner.invoke(app, ["parse", "a.log", "b.log", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parse"]["rejected_by_source"] == {"b.log": 3}
    res = runner.invoke(app, ["parse", "a.log", "b.log"])
    assert "rejected by file" in res.stdout and "b.log: 3" in res.stdout


def test_log_content_never_drives_the_terminal(tmp_path: Path) -> None:
    """Escape sequences and markup in agents, paths and bad lines are shown as text: a log is
    written by strangers and read in an operator's terminal."""
    evil = "curl/8.0 \x1b]0;PWNED\x07\x1b[2J\x1b[31m[bold]EVIL[/]\x00"
    lines = [
        f'198.51.100.7 - - [02/Mar/2026:12:00:{i:02d} +0000] "GET /p/{i} HTTP/1.1" 200 10 "-" "{evil}"'
        for i in range(30)
    ]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    parsed = runner.invoke(app, ["parse", str(log), "--format", "combined"])
    out = tmp_path / "out"
    analyzed = runner.invoke(app, ["analyze", str(log), "--format", "combined", "--out", str(out), "--force"])
    explained = runner.invoke(app, ["explain", "198.51.100.7", "--from", str(out)])
    bad = tmp_path / "bad.log"
    bad.write_text("x \x1b[2J\n" * 20)
    refused = runner.invoke(app, ["analyze", str(bad), "--format", "combined", "--out", str(out), "--quiet"])
    assert refused.exit_code == 1
    for res in (parsed, analyzed, explained, refused):
        assert "\x1b" not in res.output and "\x00" not in res.output and "\x07" not in res.output, res.output
    assert "\\x1b]0;PWNED" in parsed.output and "[bold]EVIL[/]" in explained.output
    assert "\\x1b[2J" in refused.output


def test_behind_cloudflare_trusting_its_published_edges_blocks_the_visitor_not_the_edge(tmp_path: Path) -> None:
    """The whole path a shop behind Cloudflare takes: load the published edge list, name it in
    ingest.trusted_proxies, and the scraper's own address (from X-Forwarded-For) is blocked
    while the edges that carried it are not."""
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "ips-v4").write_text("173.245.48.0/20\n104.16.0.0/13\n")
    env = {"BOTGUARD_DATA": str(tmp_path / "ranges")}
    res = runner.invoke(app, ["ranges", "update", "--from", str(pub)], env=env)
    assert res.exit_code == 0, res.output
    t0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
    lines = []
    for k in range(600):  # a scraper walking the catalogue, one product a second
        lines.append((t0 + timedelta(seconds=k), "203.0.113.50", f"/products/item-{k}", "python-requests/2.31.0"))
    for v in range(40):  # shoppers on their own networks, a few pages each with their images
        agent = (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 f"Chrome/{120 + v % 5}.0.0.0 Safari/537.36")
        for k in range(6):
            at = t0 + timedelta(seconds=15 * v + 40 * k)
            lines.append((at, f"{81 + v}.{20 + v}.7.{v + 2}", f"/products/item-{v * 7 + k}", agent))
            lines += [(at + timedelta(seconds=1), f"{81 + v}.{20 + v}.7.{v + 2}", f"/static/{name}", agent)
                      for name in ("app.css", "app.js", f"item-{v * 7 + k}.jpg")]
    lines.sort()
    log = tmp_path / "access.log"
    log.write_text("".join(
        f'104.16.0.{n % 3 + 1} - - [{ts:%d/%b/%Y:%H:%M:%S} +0000] "GET {path} HTTP/1.1" 200 900 "-" "{agent}" "{ip}"\n'
        for n, (ts, ip, path, agent) in enumerate(lines)))

    def analyze(config: str, out: str) -> tuple[str, dict[str, Any]]:
        cfg = tmp_path / f"{out}.yaml"
        cfg.write_text(config)
        res = runner.invoke(app, ["analyze", str(log), "-c", str(cfg), "--format", "nginx_xff", "--out",
                                  str(tmp_path / out), "--quiet", "--force"], env=env)
        assert res.exit_code == 0, res.output
        return ((tmp_path / out / "blocklist.txt").read_text(),
                json.loads((tmp_path / out / "summary.json").read_text()))

    blocklist, summary = analyze("ingest: {trusted_proxies: []}\n", "edges")
    assert "104.16.0." not in blocklist.replace("# ", "")
    assert any("ingest.trusted_proxies: [cloudflare]" in w for w in summary["warnings"])
    blocklist, summary = analyze("ingest: {trusted_proxies: [cloudflare]}\n", "visitors")
    listed = [ln for ln in blocklist.splitlines() if ln and not ln.startswith("#")]
    assert listed == ["203.0.113.50"] or listed == ["203.0.113.50/32"], blocklist
    assert not any("CDN edge" in w for w in summary["warnings"])
