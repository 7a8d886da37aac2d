"""Real access logs from ../shared/data: sniffed right, parsed almost entirely, nothing crashes.

Skips cleanly when the shared data is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botguard.config import Config, load_config
from botguard.ingest import Ingest, read_hits
from botguard.schema import HITS_SCHEMA, check

ACCESS_LOGS = "access_logs"
ILIOU = Path("labeled") / "web_bot_detection_iliou2021" / "phase1"
_ADDRESS = re.compile(rb"^(?:\d{1,3}\.){3}\d{1,3} |^[0-9a-fA-F:]+:[0-9a-fA-F:.]* ")
_NOT_LOGS = ("LICENSE", "README", "ReadMe")


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def tolerant_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("cfg") / "tolerant.yaml"
    path.write_text("ingest:\n  max_error_ratio: 0.9\n", encoding="utf-8")
    return load_config(path)


def _log_files(root: Path) -> list[Path]:
    return sorted(
        p for p in (root / ACCESS_LOGS).rglob("*")
        if p.is_file() and not p.name.startswith(_NOT_LOGS) and p.suffix != ".md"
    )


def _lines_without_address(path: Path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\n") if line.strip() and not _ADDRESS.match(line))


def test_shared_access_logs_are_present(shared_data: Path) -> None:
    names = {p.parent.name for p in _log_files(shared_data)}
    assert {"advertools_tests", "elastic_examples", "erddaplogs_voto", "almhuette_raith_42ibaran"} <= names


def test_clean_real_logs_parse_as_combined(shared_data: Path, cfg: Config) -> None:
    checked = 0
    for path in _log_files(shared_data):
        if "erddaplogs" in str(path) or "latin1" in path.name:
            continue  # known-damaged files: see the tests below
        hits, stats = read_hits([str(path)], cfg)
        assert stats.format == "combined" and stats.format_sniffed, path
        considered = stats.lines - stats.blank - stats.comments
        assert stats.parsed >= 0.99 * considered, (path, stats.to_dict())
        assert stats.parsed == len(hits)
        assert check(hits, HITS_SCHEMA) == [], path
        assert hits["ts"].null_count() == 0 and hits["client_ip"].null_count() == 0, path
        assert stats.problems == [] and stats.invalid_utf8_lines == 0, path
        checked += 1
    assert checked >= 4


def test_extra_trailing_field_log_keeps_the_agent(shared_data: Path, cfg: Config) -> None:
    """almhuette_raith writes combined plus one more quoted field."""
    path = shared_data / ACCESS_LOGS / "almhuette_raith_42ibaran" / "short.log"
    if not path.exists():
        pytest.skip("almhuette_raith log absent")
    hits, stats = read_hits([str(path)], cfg)
    assert stats.rejected == 0
    assert hits["user_agent"][0] == "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"
    assert hits["ts"][0].isoformat() == "2019-10-14T08:50:18+00:00"  # +0200 → UTC


def test_erddap_broken_lines_are_rejected_not_fatal(shared_data: Path, cfg: Config, tolerant_cfg: Config) -> None:
    files = [p for p in _log_files(shared_data) if "erddaplogs" in str(p)]
    if not files:
        pytest.skip("erddaplogs files absent")
    for path in files:
        hits, stats = read_hits([str(path)], tolerant_cfg)
        broken = _lines_without_address(path)
        assert stats.format == "combined", path
        assert stats.rejected == broken, (path, stats.to_dict())
        assert dict(stats.rejected_by_reason) == ({"no_match": broken} if broken else {}), path
        assert stats.parsed == stats.lines - stats.blank - broken, path
        assert check(hits, HITS_SCHEMA) == []
    # With the default 5% ratio the worst file is refused (exit 1), not silently thinned.
    worst = max(files, key=lambda p: _lines_without_address(p) / max(1, len(p.read_bytes().splitlines())))
    from botguard.errors import RefusedError

    with pytest.raises(RefusedError, match="combined"):
        read_hits([str(worst)], cfg)


def test_erddap_all_files_as_one_stream(shared_data: Path, tolerant_cfg: Config) -> None:
    root = shared_data / ACCESS_LOGS / "erddaplogs_voto"
    if not root.is_dir():
        pytest.skip("erddaplogs absent")
    ing = Ingest([str(root / "tomcat-access.log*")], tolerant_cfg)
    # rotated files read oldest first
    assert [Path(p).name for p in ing.paths][:2] == ["tomcat-access.log.9", "tomcat-access.log.8"]
    assert [Path(p).name for p in ing.paths][-1] == "tomcat-access.log.1"
    total = sum(len(b) for b in ing.batches())
    stats = ing.finish()
    assert total == stats.parsed
    assert stats.rejected == sum(_lines_without_address(Path(p)) for p in ing.paths)


def test_latin1_log_with_embedded_gzip(shared_data: Path, tolerant_cfg: Config, cfg: Config) -> None:
    path = shared_data / ACCESS_LOGS / "advertools_tests" / "combined_latin1_enc.log"
    if not path.exists():
        pytest.skip("advertools latin1 log absent")
    hits, stats = read_hits([str(path)], tolerant_cfg)
    garbage = _lines_without_address(path)
    assert garbage >= 30  # the gzip tail
    assert stats.format == "combined"
    assert stats.invalid_utf8_lines > 0
    assert stats.rejected == garbage
    assert stats.parsed == stats.lines - garbage
    assert hits["line_no"].max() < min(
        i + 1 for i, line in enumerate(path.read_bytes().split(b"\n")) if line.strip() and not _ADDRESS.match(line)
    )
    assert check(hits, HITS_SCHEMA) == []
    with pytest.raises(Exception, match="did not parse"):
        read_hits([str(path)], cfg)


# --------------------------------------------------------------------------- Iliou et al. 2021
def _annotated_ids(root: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    for f in sorted((root / "annotations").glob("*/*")):
        if f.name not in ("train", "test"):
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2:
                ids[parts[0]] = parts[1]
    return ids


def test_iliou_logs_parse_fully_and_capture_session_ids(shared_data: Path, cfg: Config) -> None:
    root = shared_data / ILIOU
    files = sorted((root / "data" / "web_logs").rglob("*.log"))
    if not files:
        pytest.skip("Iliou 2021 web logs absent")
    hits, stats = read_hits([str(f) for f in files], cfg, format="iliou")
    assert stats.rejected == 0 and stats.parsed == stats.lines - stats.blank
    assert check(hits, HITS_SCHEMA) == []
    assert hits["client_ip"].null_count() == len(hits)  # the dataset blanks addresses
    assert hits["ts"].null_count() == 0

    raw = b"\n".join(f.read_bytes() for f in files)
    captured = set(hits["session_id"].drop_nulls().to_list())
    # every captured id is a PHP session id that occurs verbatim in the log...
    assert all(re.fullmatch(r"[a-z0-9]{26}", s) for s in captured)
    # ...and every line with an id has it captured ('-' lines have none)
    with_id = len(re.findall(rb'" [a-z0-9]{26} "', raw))
    assert hits["session_id"].is_not_null().sum() == with_id

    annotated = _annotated_ids(root)
    assert len(annotated) > 100
    present = {sid for sid in annotated if sid.encode() in raw}
    # Every annotated session that appears in the logs is captured with the same id.
    assert present and present <= captured
    assert len(present) >= 0.7 * len(annotated)
    labels = {annotated[s] for s in present}
    assert {"human", "moderate_bot", "advanced_bot"} <= labels


@pytest.mark.parametrize(
    ("log", "label"),
    [
        ("bots/access_moderate_bots.log", "moderate_bot"),
        ("bots/access_advanced_bots.log", "advanced_bot"),
        ("humans/access_2.log", "human"),
        ("humans/access_3.log", "human"),
    ],
)
def test_iliou_session_ids_agree_with_labels(shared_data: Path, cfg: Config, log: str, label: str) -> None:
    root = shared_data / ILIOU
    path = root / "data" / "web_logs" / log
    if not path.exists():
        pytest.skip("Iliou 2021 web logs absent")
    hits, _ = read_hits([str(path)], cfg, format="iliou")
    annotated = _annotated_ids(root)
    labels = {annotated[s] for s in hits["session_id"].drop_nulls().unique() if s in annotated}
    assert labels == {label}
