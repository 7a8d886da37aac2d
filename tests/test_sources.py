"""Sources: files, globs, directories, rotation order, gzip, stdin, encodings, batching."""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from botguard.config import Config, load_config
from botguard.errors import InputError
from botguard.ingest import Ingest, read_hits
from botguard.schema import HITS_SCHEMA, check
from botguard.sources.files import expand_inputs, read_chunks

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _line(i: int) -> str:
    return (f'10.0.{i // 250}.{i % 250} - - [10/Oct/2023:13:{i // 60 % 60:02d}:{i % 60:02d} +0000] '
            f'"GET /products/{i}?page={i % 7} HTTP/1.1" 200 {i} "-" "agent {i}"\n')


LOG_TEXT = "".join(_line(i) for i in range(200))
LOG_BYTES = LOG_TEXT.encode()


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


def _cfg(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(gzip.compress(b"", mtime=0) if name.endswith(".gz") else b"")


def _names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


# --------------------------------------------------------------------------- expand_inputs
ROTATED = ["access.log", "access.log.1", "access.log.2.gz", "access.log.10.gz"]
ROTATED_ORDER = ["access.log.10.gz", "access.log.2.gz", "access.log.1", "access.log"]


def test_directory_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    _touch(tmp_path, *ROTATED, ".hidden")
    assert _names(expand_inputs([str(tmp_path)])) == ROTATED_ORDER


def test_glob_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    _touch(tmp_path, *ROTATED, "error.log")
    assert _names(expand_inputs([str(tmp_path / "access.log*")])) == ROTATED_ORDER


def test_rotated_siblings_given_separately_are_ordered(tmp_path: Path) -> None:
    _touch(tmp_path, *ROTATED)
    given = [str(tmp_path / n) for n in ["access.log", "access.log.2.gz", "access.log.1", "access.log.10.gz"]]
    assert _names(expand_inputs(given)) == ROTATED_ORDER


def test_dated_rotation_is_ordered_by_date_then_live(tmp_path: Path) -> None:
    _touch(tmp_path, "access.log", "access.log-20240103.gz", "access.log-20231231", "access.log-20240102.gz")
    assert _names(expand_inputs([str(tmp_path)])) == [
        "access.log-20231231", "access.log-20240102.gz", "access.log-20240103.gz", "access.log",
    ]


def test_glob_only_matches_files(tmp_path: Path) -> None:
    _touch(tmp_path, "a.log", "b.log")
    (tmp_path / "c.log").mkdir()
    assert _names(expand_inputs([str(tmp_path / "*.log")])) == ["a.log", "b.log"]


def test_glob_without_match_names_the_pattern(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing*.log")
    with pytest.raises(InputError, match="nothing") as info:
        expand_inputs([pattern])
    assert pattern in str(info.value)
    assert info.value.exit_code == 2


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-access.log")
    with pytest.raises(InputError) as info:
        expand_inputs([missing])
    assert str(info.value).startswith(missing)
    assert info.value.exit_code == 2


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no log files"):
        expand_inputs([str(tmp_path)])


def test_stdin_is_kept(tmp_path: Path) -> None:
    _touch(tmp_path, "a.log")
    assert expand_inputs(["-"]) == ["-"]
    assert expand_inputs([str(tmp_path / "a.log"), "-"]) == [str(tmp_path / "a.log"), "-"]


# --------------------------------------------------------------------------- read_chunks
def test_read_chunks_yields_whole_lines_with_continuous_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(LOG_BYTES + b"last line without newline")
    chunks = list(read_chunks(str(path), 300))
    assert len(chunks) > 10
    assert b"".join(c.data for c in chunks) == path.read_bytes()
    expected_first = 1
    for c in chunks[:-1]:
        assert c.data.endswith(b"\n")
        assert c.first_line_no == expected_first
        assert c.n_lines == c.data.count(b"\n")
        assert c.source == str(path)
        expected_first += c.n_lines
    assert chunks[-1].first_line_no == expected_first
    assert chunks[-1].data.endswith(b"without newline")


def test_gzip_is_detected_by_magic_bytes(tmp_path: Path, cfg: Config) -> None:
    plain = tmp_path / "access.log"
    plain.write_bytes(LOG_BYTES)
    hidden_gz = tmp_path / "access.log.1"  # no .gz suffix: detected by content
    hidden_gz.write_bytes(gzip.compress(LOG_BYTES))
    expected, _ = read_hits([str(plain)], cfg)
    got, stats = read_hits([str(hidden_gz)], cfg)
    assert stats.parsed == 200 and stats.problems == []
    assert got.drop("source").equals(expected.drop("source"))


# --------------------------------------------------------------------------- truncated gzip
def _truncated_gz(tmp_path: Path) -> tuple[Path, int]:
    """A gzip cut in half, and how many whole lines precede the damage."""
    gz = gzip.compress(LOG_BYTES, mtime=0)
    cut = gz[: len(gz) // 2]
    path = tmp_path / "access.log.2.gz"
    path.write_bytes(cut)
    recoverable = zlib.decompressobj(wbits=31).decompress(cut)
    return path, recoverable.count(b"\n")


def test_truncated_gzip_is_reported_naming_the_file(tmp_path: Path, cfg: Config) -> None:
    path, _ = _truncated_gz(tmp_path)
    ing = Ingest([str(path)], cfg)
    list(ing.batches())
    stats = ing.finish()
    assert len(stats.problems) == 1
    assert stats.problems[0].source == str(path)
    assert "gzip" in stats.problems[0].message
    assert any(str(path) in p for p in stats.to_dict()["problems"])


def test_analyze_warns_of_a_truncated_gzip(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from botguard.cli.app import app

    path, _ = _truncated_gz(tmp_path)
    res = CliRunner().invoke(app, ["analyze", str(path), "--out", str(tmp_path / "out"), "--force"],
                             env={"BOTGUARD_DATA": str(tmp_path / "data")})
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and str(path) in res.output and "gzip" in res.output


def test_truncated_gzip_keeps_lines_before_the_damage_small_batches(tmp_path: Path) -> None:
    path, whole = _truncated_gz(tmp_path)
    assert 50 < whole < 200
    small = _cfg(tmp_path, "ingest: {batch_bytes: 4096}\n")
    hits, stats = read_hits([str(path)], small)
    assert len(stats.problems) == 1
    assert 0 < stats.parsed <= whole
    # what was kept is exactly the start of the log
    assert hits["path"].to_list() == [f"/products/{i}" for i in range(stats.parsed)]


def test_truncated_gzip_keeps_lines_before_the_damage(tmp_path: Path, cfg: Config) -> None:
    path, whole = _truncated_gz(tmp_path)
    hits, stats = read_hits([str(path)], cfg)
    assert len(stats.problems) == 1
    assert stats.parsed == whole
    assert hits["line_no"].to_list() == list(range(1, whole + 1))


# --------------------------------------------------------------------------- stdin
def test_stdin(monkeypatch: pytest.MonkeyPatch, cfg: Config, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(LOG_BYTES)))
    hits, stats = read_hits(["-"], cfg)
    assert stats.parsed == 200
    assert stats.sources == ["<stdin>"]
    assert set(hits["source"]) == {"<stdin>"}
    assert hits["line_no"].to_list() == list(range(1, 201))


def test_gzip_on_stdin(monkeypatch: pytest.MonkeyPatch, cfg: Config) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(LOG_BYTES))))
    hits, stats = read_hits(["-"], cfg)
    assert stats.parsed == 200 and len(hits) == 200


# --------------------------------------------------------------------------- odd inputs
def test_empty_input_gives_zero_hits(tmp_path: Path, cfg: Config) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    hits, stats = read_hits([str(empty)], cfg)
    assert hits.is_empty() and check(hits, HITS_SCHEMA) == []
    assert (stats.lines, stats.parsed, stats.rejected, stats.problems) == (0, 0, 0, [])


def test_blank_and_comment_lines_are_counted_not_rejected(tmp_path: Path, cfg: Config) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"\n# a comment\n" + _line(0).encode() + b"   \n" + _line(1).encode())
    hits, stats = read_hits([str(path)], cfg)
    assert (stats.lines, stats.blank, stats.comments, stats.parsed, stats.rejected) == (5, 2, 1, 2, 0)
    assert hits["line_no"].to_list() == [3, 5]


def test_empty_stdin(monkeypatch: pytest.MonkeyPatch, cfg: Config) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    hits, stats = read_hits(["-"], cfg)
    assert hits.is_empty() and stats.parsed == 0


def test_crlf_line_endings(tmp_path: Path, cfg: Config) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(LOG_BYTES.replace(b"\n", b"\r\n"))
    hits, stats = read_hits([str(path)], cfg)
    assert stats.parsed == 200 and stats.rejected == 0
    assert hits["user_agent"][0] == "agent 0"


def test_latin1_is_decoded_with_replacement_and_counted(cfg: Config) -> None:
    hits, stats = read_hits([str(LOGS / "latin1.log")], cfg)
    assert (stats.parsed, stats.rejected, stats.invalid_utf8_lines) == (2, 0, 1)
    assert hits.select("path", "user_agent").rows() == [
        ("/caf\ufffd", "M\ufffdller-Bot/1.0"),
        ("/", "Mozilla/5.0"),
    ]


def test_latin1_in_one_batch_of_many(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    bad = '192.0.2.1 - - [10/Oct/2023:13:55:36 +0000] "GET /\xe9t\xe9 HTTP/1.1" 200 5 "-" "x"\n'.encode("latin-1")
    path.write_bytes(LOG_BYTES + bad + LOG_BYTES)
    hits, stats = read_hits([str(path)], _cfg(tmp_path, "ingest: {batch_bytes: 1000}\n"))
    assert (stats.parsed, stats.invalid_utf8_lines) == (401, 1)
    assert hits.filter(pl.col("line_no") == 201)["path"].to_list() == ["/\ufffdt\ufffd"]


# --------------------------------------------------------------------------- batching
def test_tiny_batches_give_identical_hits(tmp_path: Path, cfg: Config) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(LOG_BYTES + b"garbage line\n" + LOG_BYTES)
    tiny = _cfg(tmp_path, "ingest: {batch_bytes: 200}\n")
    ing = Ingest([str(path)], tiny)
    batches = list(ing.batches())
    tiny_stats = ing.finish()
    assert len(batches) > 50
    tiny_hits = pl.concat(batches)
    hits, stats = read_hits([str(path)], cfg)
    assert tiny_hits.equals(hits)
    assert tiny_hits["line_no"].to_list() == [*range(1, 201), *range(202, 402)]
    assert tiny_stats.to_dict() == stats.to_dict()


def test_pieces_parsed_side_by_side_come_out_in_log_order(
    tmp_path: Path, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of a stateless parser are parsed two at a time; when a later chunk finishes
    first, hits, rejects (the rejects file too) and statistics still follow the log."""
    import time

    from botguard import ingest as ingest_mod
    from botguard.parsers.logformat import RegexLogParser

    path = tmp_path / "a.log"
    path.write_bytes(b"garbage one\n" + LOG_BYTES + b"garbage two\n" + LOG_BYTES)
    tiny = _cfg(tmp_path, "ingest: {batch_bytes: 600, max_error_ratio: 0.5}\n")
    parse_bytes = RegexLogParser.parse_bytes
    calls = []

    def slow_odd(self: RegexLogParser, chunk: Any, tz: str) -> Any:
        calls.append(chunk.first_line_no)
        if len(calls) % 2:
            time.sleep(0.02)  # the first of each pair finishes last
        return parse_bytes(self, chunk, tz)

    def run(workers: int) -> tuple[pl.DataFrame, dict[str, Any], str]:
        monkeypatch.setattr(ingest_mod, "PARSE_WORKERS", workers)
        monkeypatch.setattr(RegexLogParser, "parse_bytes", slow_odd)
        rejects = io.StringIO()
        ing = Ingest([str(path)], tiny, format="combined", rejects=rejects)
        hits = pl.concat(list(ing.batches()))
        return hits, ing.finish().to_dict(), rejects.getvalue()

    side_by_side = run(2)
    assert len(calls) > 20
    one_by_one = run(1)
    assert side_by_side[0].equals(one_by_one[0])
    assert side_by_side[0]["line_no"].to_list() == [*range(2, 202), *range(203, 403)]
    assert side_by_side[1] == one_by_one[1]
    assert side_by_side[2] == one_by_one[2]
    assert [line.split("\t")[1] for line in side_by_side[2].splitlines()] == ["1", "202"]


def test_line_numbers_restart_per_source(tmp_path: Path, cfg: Config) -> None:
    (tmp_path / "access.log.1").write_bytes(LOG_BYTES[: LOG_BYTES.index(b"\n", 500) + 1])
    (tmp_path / "access.log").write_bytes(LOG_BYTES)
    hits, stats = read_hits([str(tmp_path)], cfg)
    older = hits.filter(pl.col("source") == str(tmp_path / "access.log.1"))
    newer = hits.filter(pl.col("source") == str(tmp_path / "access.log"))
    assert older["line_no"].to_list() == list(range(1, len(older) + 1))
    assert newer["line_no"].to_list() == list(range(1, 201))
    # oldest file first in the stream
    assert hits["source"][0] == str(tmp_path / "access.log.1")
    assert stats.sources == [str(tmp_path / "access.log.1"), str(tmp_path / "access.log")]
    assert stats.bytes_read == sum(os.path.getsize(p) for p in stats.sources)


@pytest.mark.parametrize("kind", ["bz2", "xz"])
def test_bzip2_and_xz_are_read_and_truncation_keeps_what_came_before(tmp_path: Path, cfg: Config, kind: str) -> None:
    import bz2
    import lzma

    pack = bz2.compress if kind == "bz2" else lzma.compress
    plain = tmp_path / "access.log"
    plain.write_bytes(LOG_BYTES)
    expected, _ = read_hits([str(plain)], cfg)
    packed = tmp_path / f"access.log.1.{kind}"
    packed.write_bytes(pack(LOG_BYTES[:5000]) + pack(LOG_BYTES[5000:]))  # two streams, as appended rotations
    small = _cfg(tmp_path, "ingest: {batch_bytes: 4096}\n")
    got, stats = read_hits([str(packed)], small)
    assert stats.problems == [] and got.drop("source").equals(expected.drop("source"))
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(pack(LOG_BYTES)[:-40])
    got, stats = read_hits([str(cut)], cfg)
    assert len(stats.problems) == 1 and f"truncated {kind}" in stats.problems[0].message
    # What came before the damage is kept: with xz, most of it; bzip2 decodes whole 900 kB
    # blocks, so a log shorter than one block keeps nothing, but the run still says why.
    assert got["path"].to_list() == expected["path"].head(len(got)).to_list()
    if kind == "xz":
        assert len(got) > 100


def test_zstd_is_refused_with_the_way_round_it(tmp_path: Path, cfg: Config) -> None:
    path = tmp_path / "access.log.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 64)
    with pytest.raises(InputError) as exc:
        read_hits([str(path)], cfg)
    assert "zstd-compressed" in str(exc.value) and "zstd -dc" in (exc.value.hint or "")


def test_a_byte_order_mark_does_not_cost_the_first_line(tmp_path: Path, cfg: Config) -> None:
    plain = tmp_path / "access.log"
    plain.write_bytes(LOG_BYTES)
    marked = tmp_path / "bom.log"
    marked.write_bytes(b"\xef\xbb\xbf" + LOG_BYTES)
    expected, _ = read_hits([str(plain)], cfg)
    got, stats = read_hits([str(marked)], cfg)
    assert stats.rejected == 0 and got.drop("source").equals(expected.drop("source"))


def test_a_directory_leaves_its_error_logs_out_unless_named(tmp_path: Path) -> None:
    _touch(tmp_path, *ROTATED, "error.log", "error.log.1", "shop-error.log", "ssl_error_log")
    assert _names(expand_inputs([str(tmp_path)])) == ROTATED_ORDER
    assert _names(expand_inputs([str(tmp_path / "error.log")])) == ["error.log"]


def test_a_directory_leaves_non_logs_out_and_no_file_is_read_twice(tmp_path: Path) -> None:
    _touch(tmp_path, *ROTATED, "hits.parquet", "state.db", "report.html")
    assert _names(expand_inputs([str(tmp_path)])) == ROTATED_ORDER
    # Named twice, by a glob that matches it again, or through a symlink: read once.
    (tmp_path / "current.log").symlink_to(tmp_path / "access.log")
    twice = [str(tmp_path / "access.log"), str(tmp_path / "access.log*"), str(tmp_path / "current.log")]
    assert _names(expand_inputs(twice)).count("access.log") == 1
    assert "current.log" not in _names(expand_inputs(twice))


def test_a_copy_of_a_log_under_another_name_is_read_once(tmp_path: Path, cfg: Config) -> None:
    """logrotate compressing access.log.1 leaves it beside access.log.1.gz for a moment, and
    operators keep copies: the same lines must not count twice."""
    (tmp_path / "access.log.1").write_bytes(LOG_BYTES)
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(LOG_BYTES))
    (tmp_path / "backup-of-access.log").write_bytes(LOG_BYTES)
    (tmp_path / "other.log").write_bytes(LOG_BYTES.replace(b"200", b"404"))  # same size, other lines
    hits, stats = read_hits([str(tmp_path)], cfg)
    assert len(hits) == 2 * LOG_BYTES.count(b"\n")
    skipped = {p.source for p in stats.problems if "same content as" in p.message}
    assert len(skipped) == 2 and len(stats.sources) == 2
    assert str(tmp_path / "other.log") in stats.sources
