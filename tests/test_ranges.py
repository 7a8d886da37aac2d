"""Range sources: provider formats, update from a folder or URLs, manifest, load and lookup."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from botguard.config import Config, load_config
from botguard.errors import InputError
from botguard.iputil import NetworkIndex
from botguard.ranges import (
    INDEX_CACHE,
    RangeSet,
    list_ranges,
    load_ranges,
    parse_ranges,
    resolve_data_dir,
    update_ranges,
)

AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config()


@pytest.fixture
def ranges_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "ranges"


def _parse(path: Path) -> tuple[list[str], int, str]:
    parsed = parse_ranges(path.read_bytes(), path.name)
    return parsed.networks, parsed.dropped, parsed.format


# --------------------------------------------------------------------------- parsers
@pytest.mark.parametrize(
    ("relpath", "networks", "dropped", "fmt"),
    [
        (
            "official/googlebot.json",
            ["192.0.2.0/27", "192.0.2.64/27", "2001:db8:4801:10::/64", "2001:db8:4801:11::/64"],
            1,
            "google",
        ),
        ("official/bingbot.json", ["198.51.100.0/28", "198.51.100.32/28"], 0, "google"),
        ("lists/applebot.json", ["192.0.2.224/28", "2001:db8:a11e::/48"], 0, "google"),
        (
            "official/ip-ranges.json",
            ["203.0.113.0/26", "203.0.113.76/30", "2001:db8:a000::/36"],
            0,
            "aws",
        ),
        (
            "official/public_ip_ranges.json",
            ["203.0.113.128/28", "203.0.113.144/28", "2001:db8:c10::/48"],
            0,
            "oracle",
        ),
        (
            "mirror/microsoft-azure-ip-ranges.json",
            ["203.0.113.160/30", "203.0.113.176/29", "2001:db8:a2::/48"],
            0,
            "azure",
        ),
        (
            "mirror/google.csv",
            ["192.0.2.128/26", "192.0.2.192/27", "2001:db8:d0::/48"],
            0,
            "csv",
        ),
        ("mirror/nested/linode.csv", ["198.51.100.128/26", "2001:db8:3c00::/40"], 0, "csv"),
        (
            "mirror/nested/hetzner.json",
            ["198.51.100.192/27", "198.51.100.224/27", "2001:db8:f000::/36"],
            1,
            "mirror",
        ),
        (
            "lists/yandex.ips",
            ["192.0.2.160/28", "192.0.2.176/28", "192.0.2.200/32", "2001:db8:6b8::/48"],
            1,
            "text",
        ),
        ("formats/list.json", ["192.0.2.0/24", "2001:db8::/32"], 1, "json-list"),
        ("formats/tabs.txt", ["192.0.2.10/32", "198.51.100.0/24"], 0, "text"),
    ],
)
def test_provider_formats(
    ranges_dir: Path, relpath: str, networks: list[str], dropped: int, fmt: str
) -> None:
    assert _parse(ranges_dir / relpath) == (networks, dropped, fmt)


def test_unknown_json_shape_is_read_leniently(ranges_dir: Path) -> None:
    networks, dropped, fmt = _parse(ranges_dir / "formats/unknown-shape.json")
    assert fmt == "json"
    assert networks == ["192.0.2.8/29", "198.51.100.7/32", "203.0.113.240/28", "2001:db8:dd::/48"]
    # '1.2.3.4/99' tried to be a network; 'eu-west-1' and the description did not.
    assert dropped == 1


def test_address_pair_rows_become_networks(ranges_dir: Path) -> None:
    networks, dropped, _ = _parse(ranges_dir / "formats/datacenters.csv")
    assert networks == ["192.0.2.0/24", "198.51.100.0/26", "198.51.100.64/27"]
    assert dropped == 0


def test_host_bits_are_masked_and_duplicates_removed() -> None:
    parsed = parse_ranges(b"10.1.2.3/8\n10.0.0.0/8\n2001:DB8::1/32\n\xef\xbb\xbf\n")
    assert parsed.networks == ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(
    "garbage", ["999.1.1.1/24", "10.0.0.0/33", "not-an-ip", "1.2.3", "::g", "10.0.0.0/-1"]
)
def test_garbage_is_dropped_and_counted(garbage: str) -> None:
    parsed = parse_ranges(f"192.0.2.1\n{garbage}\n".encode())
    assert parsed.networks == ["192.0.2.1/32"]
    assert parsed.dropped == 1


def test_broken_json_falls_back_to_lines() -> None:
    parsed = parse_ranges(b'{"prefixes": [ "192.0.2.0/24"')
    assert parsed.networks == []
    assert parsed.dropped == 1


# --------------------------------------------------------------------------- update
def test_update_from_dir_finds_files_in_nested_folders(
    cfg: Config, ranges_dir: Path, tmp_path: Path
) -> None:
    statuses = {s.name: s for s in update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path,
                                                   as_of=AS_OF)}
    updated = {n for n, s in statuses.items() if s.status == "updated"}
    assert updated == {
        "googlebot", "bingbot", "applebot", "yandex",
        "aws", "oracle", "digitalocean", "linode", "hetzner", "azure",
    }
    assert statuses["hetzner"].origin == str((ranges_dir / "mirror/nested/hetzner.json").resolve())
    assert statuses["googlebot"].count == 4 and statuses["googlebot"].dropped == 1
    assert statuses["gptbot"].status == "not_found"
    assert "gptbot.json" in (statuses["gptbot"].message or "")


def test_update_writes_sorted_lists_and_manifest(
    cfg: Config, ranges_dir: Path, tmp_path: Path
) -> None:
    update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, as_of=AS_OF)
    stored = (tmp_path / "yandex.txt").read_text()
    assert stored.startswith("# botguard ranges: yandex (crawler), 4 networks\n")
    body = [line for line in stored.splitlines() if not line.startswith("#")]
    assert body == ["192.0.2.160/28", "192.0.2.176/28", "192.0.2.200/32", "2001:db8:6b8::/48"]

    manifest = json.loads((tmp_path / "manifest.json").read_text())["sources"]
    entry = manifest["yandex"]
    assert entry["name"] == "yandex"
    assert entry["kind"] == "crawler"
    assert entry["count"] == 4
    assert entry["fetched_at"] == "2026-03-01T12:00:00Z"
    assert entry["origin"].endswith("lists/yandex.ips")
    assert entry["sha256"] == hashlib.sha256((tmp_path / "yandex.txt").read_bytes()).hexdigest()
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_list_ranges_reports_counts_and_ages(
    cfg: Config, ranges_dir: Path, tmp_path: Path
) -> None:
    update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, as_of=AS_OF)
    later = AS_OF + timedelta(days=3, hours=2)
    listed = {s.name: s for s in list_ranges(cfg, tmp_path, as_of=later)}
    assert [s.name for s in list_ranges(cfg, tmp_path)] == [s.name for s in cfg.ranges.sources]
    assert listed["aws"].status == "ok"
    assert listed["aws"].count == 3
    assert listed["aws"].fetched_at == AS_OF
    assert listed["aws"].age == timedelta(days=3, hours=2)
    assert listed["gcp"].status == "missing" and listed["gcp"].count is None


def _urls(cfg: Config) -> dict[str, str]:
    return {u: s.name for s in cfg.ranges.sources for u in s.urls}


def test_download_updates_and_failed_download_keeps_previous_copy(
    cfg: Config, tmp_path: Path
) -> None:
    names = _urls(cfg)
    google = b'{"prefixes": [{"ipv4Prefix": "192.0.2.0/24"}]}'

    def good(url: str, timeout: float) -> bytes:
        assert timeout > 0
        return google if names[url] == "googlebot" else b"198.51.100.0/24\n"

    first = {s.name: s for s in update_ranges(cfg, data_dir=tmp_path, fetch=good, as_of=AS_OF)}
    assert first["googlebot"].status == "updated"
    assert first["googlebot"].origin == next(
        s.url for s in cfg.ranges.sources if s.name == "googlebot"
    )
    assert first["yandex"].status == "skipped"  # no URL: only --from can provide it
    before = (tmp_path / "googlebot.txt").read_bytes()

    def broken(url: str, timeout: float) -> bytes:
        if names[url] == "googlebot":
            raise OSError("connection reset")
        return b"<html>503 Service Unavailable</html>"

    later = AS_OF + timedelta(days=1)
    second = {s.name: s for s in update_ranges(cfg, data_dir=tmp_path, fetch=broken, as_of=later)}
    assert second["googlebot"].status == "failed"
    assert "connection reset" in (second["googlebot"].message or "")
    assert second["googlebot"].fetched_at == AS_OF
    assert second["googlebot"].age == timedelta(days=1)
    assert second["bingbot"].status == "failed"  # a page with no networks is not a list
    assert (tmp_path / "googlebot.txt").read_bytes() == before
    assert load_ranges(cfg, tmp_path).loaded("googlebot")
    assert load_ranges(cfg, tmp_path).networks["bingbot"] == ["198.51.100.0/24"]


def test_a_source_of_several_lists_is_fetched_whole_or_kept(cfg: Config, tmp_path: Path) -> None:
    """Cloudflare publishes its IPv4 and IPv6 edges apart: one source, both lists, or (one
    download failing) the previous copy of both."""
    lists = {"https://www.cloudflare.com/ips-v4": b"173.245.48.0/20\n104.16.0.0/13\n",
             "https://www.cloudflare.com/ips-v6": b"2606:4700::/32\n"}
    first = update_ranges(cfg, data_dir=tmp_path, fetch=lambda url, t: lists[url], as_of=AS_OF, only=["cloudflare"])
    assert [(s.status, s.kind, s.count) for s in first] == [("updated", "cdn", 3)]
    loaded = load_ranges(cfg, tmp_path)
    assert loaded.names_of_kind("cdn") == ["cloudflare"]
    assert loaded.lookup(pl.Series(["104.16.1.1", "2606:4700::1", "8.8.8.8"]), ["cloudflare"]).to_list() == [
        "cloudflare", "cloudflare", None]

    def half(url: str, timeout: float) -> bytes:
        if url.endswith("v6"):
            raise OSError("timed out")
        return b"198.51.100.0/24\n"

    second = update_ranges(cfg, data_dir=tmp_path, fetch=half, as_of=AS_OF + timedelta(days=1), only=["cloudflare"])
    assert second[0].status == "failed" and "timed out" in (second[0].message or "")
    assert load_ranges(cfg, tmp_path).networks["cloudflare"] == ["104.16.0.0/13", "173.245.48.0/20", "2606:4700::/32"]


def test_from_dir_must_be_a_folder(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        update_ranges(cfg, from_dir=tmp_path / "nope", data_dir=tmp_path)


def test_only_updates_named_sources(cfg: Config, ranges_dir: Path, tmp_path: Path) -> None:
    statuses = update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, only=["aws"])
    assert [s.name for s in statuses] == ["aws"]
    assert load_ranges(cfg, tmp_path).names == ["aws"]
    with pytest.raises(InputError, match="unknown range source 'amazon'"):
        update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, only=["amazon"])


def test_data_dir_from_env_and_config(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOTGUARD_DATA", raising=False)
    assert resolve_data_dir(cfg) == Path(cfg.ranges.data_dir).expanduser()
    assert "~" not in str(resolve_data_dir(cfg))
    monkeypatch.setenv("BOTGUARD_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(cfg) == tmp_path / "env"
    assert resolve_data_dir(cfg, tmp_path / "arg") == tmp_path / "arg"


# --------------------------------------------------------------------------- load / lookup
def test_missing_data_dir_loads_nothing(cfg: Config, tmp_path: Path) -> None:
    ranges = load_ranges(cfg, tmp_path / "nowhere")
    assert ranges.names == [] and not ranges.loaded("googlebot")
    assert ranges.lookup(pl.Series(["192.0.2.1"])).to_list() == [None]


def test_edited_list_is_not_trusted(cfg: Config, ranges_dir: Path, tmp_path: Path) -> None:
    update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, as_of=AS_OF)
    with (tmp_path / "googlebot.txt").open("a") as fh:
        fh.write("0.0.0.0/0\n")
    ranges = load_ranges(cfg, tmp_path)
    assert not ranges.loaded("googlebot") and ranges.loaded("bingbot")
    assert any("googlebot" in p for p in ranges.problems)
    listed = {s.name: s for s in list_ranges(cfg, tmp_path)}
    assert listed["googlebot"].status == "corrupt"


def test_lookup_returns_first_matching_source(cfg: Config, ranges_dir: Path,
                                              tmp_path: Path) -> None:
    update_ranges(cfg, from_dir=ranges_dir, data_dir=tmp_path, as_of=AS_OF)
    ranges = load_ranges(cfg, tmp_path)
    ips = pl.Series("ip", [
        "192.0.2.1", "192.0.2.170", "192.0.2.129", "2001:db8:6b8::1", "203.0.113.78",
        "2001:db8:a000:1::9", "10.0.0.1", None, "garbage",
    ])
    # 192.0.2.170 is in both yandex (crawler, listed first) and digitalocean.
    assert ranges.lookup(ips).to_list() == [
        "googlebot", "yandex", "digitalocean", "yandex", "aws", "aws", None, None, None,
    ]
    clouds = ranges.lookup(ips, ["digitalocean", "aws", "gcp"])
    assert clouds.to_list() == [None, "digitalocean", "digitalocean", None, "aws", "aws",
                                None, None, None]
    assert clouds.name == "ip" and clouds.dtype == pl.String
    assert ranges.lookup(ips, ["gcp"]).null_count() == len(ips)


def test_rangeset_can_be_built_directly() -> None:
    ranges = RangeSet({"a": ["192.0.2.0/24"], "b": ["192.0.2.0/25", "2001:db8::/32"]})
    ips = pl.Series(["192.0.2.1", "192.0.2.200", "2001:db8::1"])
    assert ranges.lookup(ips, ["b", "a"]).to_list() == ["b", "a", "b"]
    assert ranges.lookup(ips).to_list() == ["a", "a", "b"]


def _fetch(lists: dict[str, bytes]) -> Callable[[str, float], bytes]:
    names = {u: s.name for s in load_config().ranges.sources for u in s.urls}

    def fetch(url: str, timeout: float) -> bytes:
        return lists.get(names[url], b"")

    return fetch


def test_built_indexes_are_cached_and_read_back(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run reads the index an earlier run built from the same lists instead of parsing every
    network again; what it finds is the same."""
    lists = {"googlebot": b"192.0.2.0/27\n2001:db8:4801::/48\n", "aws": b"198.51.100.0/24\n192.0.2.0/24\n"}
    update_ranges(cfg, data_dir=tmp_path, fetch=_fetch(lists), as_of=AS_OF, only=["googlebot", "aws"])
    ips = pl.Series("ip", ["192.0.2.1", "192.0.2.100", "198.51.100.9", "2001:db8:4801::1", "::ffff:192.0.2.3",
                           "10.0.0.1", None, "garbage"])
    expected = ["googlebot", "aws", "aws", "googlebot", "googlebot", None, None, None]
    assert load_ranges(cfg, tmp_path).lookup(ips, ["googlebot", "aws"]).to_list() == expected
    assert len(list((tmp_path / INDEX_CACHE).glob("*.npz"))) == 1

    def no_build(lists: object) -> NetworkIndex:
        raise AssertionError("the cached index was not used")

    with monkeypatch.context() as m:
        m.setattr(NetworkIndex, "build", staticmethod(no_build))
        assert load_ranges(cfg, tmp_path).lookup(ips, ["googlebot", "aws"]).to_list() == expected
        # Another choice of lists is another index, built anew.
        with pytest.raises(AssertionError, match="cached index"):
            load_ranges(cfg, tmp_path).lookup(ips, ["aws"])
    assert load_ranges(cfg, tmp_path).lookup(ips, ["aws", "googlebot"]).to_list()[:2] == ["aws", "aws"]


def test_a_cached_index_never_outlives_its_lists(cfg: Config, tmp_path: Path) -> None:
    """Updated lists are looked up in a new index (the cache is keyed by the lists' digests
    and emptied by the update); a damaged cache file is rebuilt; an unwritable cache folder
    only costs the time."""
    fetch = _fetch({"aws": b"198.51.100.0/24\n"})
    update_ranges(cfg, data_dir=tmp_path, fetch=fetch, as_of=AS_OF, only=["aws"])
    ips = pl.Series("ip", ["198.51.100.9", "203.0.113.5"])
    assert load_ranges(cfg, tmp_path).lookup(ips).to_list() == ["aws", None]
    (cached,) = (tmp_path / INDEX_CACHE).glob("*.npz")
    update_ranges(cfg, data_dir=tmp_path, fetch=_fetch({"aws": b"203.0.113.0/24\n"}), as_of=AS_OF, only=["aws"])
    assert not cached.exists()
    assert load_ranges(cfg, tmp_path).lookup(ips).to_list() == [None, "aws"]
    (cached,) = (tmp_path / INDEX_CACHE).glob("*.npz")
    npy = io.BytesIO()
    np.save(npy, np.arange(3))
    for damage in (b"", b"PK\x03\x04 not a zip", cached.read_bytes()[: cached.stat().st_size // 2], npy.getvalue()):
        cached.write_bytes(damage)
        assert load_ranges(cfg, tmp_path).lookup(ips).to_list() == [None, "aws"]
    (tmp_path / INDEX_CACHE).rename(tmp_path / "elsewhere")
    (tmp_path / INDEX_CACHE).write_text("a file where the folder should be")
    assert load_ranges(cfg, tmp_path).lookup(ips).to_list() == [None, "aws"]


def test_an_index_read_back_must_have_an_index_shape() -> None:
    index = NetworkIndex.build([["192.0.2.0/24", "2001:db8::/32"], ["198.51.100.0/24"]])
    arrays = index.to_arrays()
    ips = pl.Series(["192.0.2.1", "198.51.100.1", "2001:db8::1", "203.0.113.1"])
    assert NetworkIndex.from_arrays(arrays).lookup(ips).to_list() == [0, 1, 0, None]
    bad_label = {**arrays, "v4_labels": arrays["v4_labels"] + 5}
    unsorted = {**arrays, "v4_bounds": arrays["v4_bounds"][::-1].copy()}
    wrong_type = {**arrays, "v6_bounds": arrays["v6_bounds"].astype("S8")}
    short = {**arrays, "v6_labels": arrays["v6_labels"][:-1]}
    for broken in (bad_label, unsorted, wrong_type, short):
        with pytest.raises(ValueError):
            NetworkIndex.from_arrays(broken)


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_update_from_real_reference_folder(
    cfg: Config, shared_data: Path, tmp_path: Path
) -> None:
    statuses = {s.name: s for s in update_ranges(cfg, from_dir=shared_data / "reference",
                                                   data_dir=tmp_path, as_of=AS_OF)}
    for name in ("googlebot", "google-special-crawlers", "google-user-triggered", "bingbot",
                 "applebot", "aws", "gcp", "azure", "oracle", "digitalocean", "linode", "cloudflare", "fastly"):
        assert statuses[name].status == "updated", statuses[name]
        assert (statuses[name].count or 0) > 0
        assert statuses[name].dropped == 0
    assert statuses["aws"].count and statuses["aws"].count > 5000
    ranges = load_ranges(cfg, tmp_path)
    ips = pl.Series(["66.249.66.1", "3.5.140.1", "157.55.39.1", "8.8.8.8", "104.16.1.1", "151.101.1.1"])
    assert ranges.lookup(ips, ["googlebot", "bingbot", "aws"]).to_list() == [
        "googlebot", "aws", "bingbot", None, None, None,
    ]
    assert ranges.lookup(ips, ranges.names_of_kind("cdn")).to_list() == [None] * 4 + ["cloudflare", "fastly"]


def test_publication_time_is_read_from_provider_files_and_kept(tmp_path: Path) -> None:
    """A list is evidence about traffic of about its own time: the operators' own stamp is kept."""
    from datetime import UTC, datetime

    from botguard.ranges import parse_ranges

    google = b'{"creationTime": "2015-05-01T05:47:00.000000", "prefixes": [{"ipv4Prefix": "66.249.64.0/27"}]}'
    aws = b'{"syncToken": "1", "createDate": "2024-01-09-21-13-06", "prefixes": [{"ip_prefix": "3.5.140.0/22"}]}'
    assert parse_ranges(google).published == datetime(2015, 5, 1, 5, 47, tzinfo=UTC)
    assert parse_ranges(aws).published == datetime(2024, 1, 9, 21, 13, 6, tzinfo=UTC)
    assert parse_ranges(b"66.249.64.0/27\n").published is None
    src = tmp_path / "src"
    src.mkdir()
    (src / "googlebot.json").write_bytes(google)
    cfg = load_config()
    update_ranges(cfg, from_dir=src, data_dir=tmp_path / "data")
    loaded = load_ranges(cfg, tmp_path / "data")
    assert loaded.published_at["googlebot"] == datetime(2015, 5, 1, 5, 47, tzinfo=UTC)
    assert "googlebot" in loaded.fetched_at


def test_update_cli_fails_loudly_and_is_quiet_on_success(fixtures_dir: Path, tmp_path: Path) -> None:
    """Cron's weekly refresh: nothing printed when it worked, a reason and exit 1 when no list
    could be updated (the previous copies stay)."""
    from typer.testing import CliRunner

    from botguard.cli.app import app

    runner = CliRunner()
    env = {"BOTGUARD_DATA": str(tmp_path / "data")}
    ok = runner.invoke(app, ["ranges", "update", "--from", str(fixtures_dir / "ranges"), "--quiet"], env=env)
    assert ok.exit_code == 0 and ok.output == ""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "googlebot.json").write_text("{not json")
    bad = runner.invoke(app, ["ranges", "update", "--from", str(broken), "--quiet"], env=env)
    assert bad.exit_code == 1
    assert "googlebot" in bad.output and "no valid networks" in bad.output and "no range list was updated" in bad.output
    assert load_ranges(load_config(), tmp_path / "data").loaded("googlebot")
