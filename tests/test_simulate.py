"""botguard.simulate: determinism, format, labels, ranges and the behaviour of each kind."""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botguard.simulate import (
    DEFAULT_START,
    KIND_LABELS,
    KINDS,
    SimulationResult,
    clients_for_lines,
    estimate_lines,
    kind_counts,
    simulate,
)
from botguard.simulate.__main__ import main
from botguard.simulate.layouts import LAYOUTS

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "fixtures" / "shop"

# strict combined format: nothing optional, UTC only, quoted fields without raw quotes
LINE = re.compile(
    r'^(?P<ip>[0-9a-f.:]+) - - '
    r"\[(?P<ts>\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2})"
    r' \+0000\] "(?P<method>GET|POST|HEAD) (?P<path>/[^\s"]*) HTTP/(?:1\.1|2\.0)" '
    r'(?P<status>[1-5]\d\d) (?P<bytes>\d+) "(?P<referer>-|https?://[^\s"]+)" "(?P<agent>[^"]+)"$'
)
ASSET = re.compile(r"\.(?:css|js|woff2?|png|jpe?g|webp|svg|ico)(?:\?|$)")


@dataclass(frozen=True)
class Hit:
    ip: str
    ts: datetime
    method: str
    path: str
    status: int
    bytes: int
    referer: str
    agent: str


def read_log(path: Path) -> list[Hit]:
    hits = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = LINE.match(line)
        assert m, f"line {n} is not strict combined format: {line!r}"
        hits.append(Hit(
            ip=m["ip"],
            ts=datetime.strptime(m["ts"], "%d/%b/%Y:%H:%M:%S").replace(tzinfo=UTC),
            method=m["method"], path=m["path"], status=int(m["status"]),
            bytes=int(m["bytes"]), referer=m["referer"], agent=m["agent"],
        ))
    return hits


def read_labels(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == ["ip", "label", "kind"]
    labels = {r["ip"]: (r["label"], r["kind"]) for r in rows}
    assert len(labels) == len(rows), "an address is labelled twice"
    return labels


Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_ranges(ranges_dir: Path) -> dict[str, list[Net]]:
    def google_format(name: str) -> list[Net]:
        doc = json.loads((ranges_dir / name).read_text())
        assert set(doc) == {"creationTime", "prefixes"}
        return [ipaddress.ip_network(p.get("ipv4Prefix") or p["ipv6Prefix"])
                for p in doc["prefixes"]]

    aws = json.loads((ranges_dir / "ip-ranges.json").read_text())
    assert {"syncToken", "createDate", "prefixes", "ipv6_prefixes"} <= set(aws)
    cloud = [ipaddress.ip_network(p["ip_prefix"]) for p in aws["prefixes"]]
    cloud += [ipaddress.ip_network(p["ipv6_prefix"]) for p in aws["ipv6_prefixes"]]
    assert all(p["service"] in {"AMAZON", "EC2"} and p["region"] for p in aws["prefixes"])
    monitor = [ipaddress.ip_network(line.strip(), strict=False)
               for line in (ranges_dir / "uptimerobot.ips").read_text().splitlines()
               if line.strip()]
    return {"googlebot": google_format("googlebot.json"),
            "bingbot": google_format("bingbot.json"),
            "monitor": monitor, "cloud": cloud}


def inside(ip: str, nets: Iterable[Net]) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address.version == n.version and address in n for n in nets)


@dataclass(frozen=True)
class Sample:
    result: SimulationResult
    hits: list[Hit]
    labels: dict[str, tuple[str, str]]
    ranges: dict[str, list[Net]]

    def by_kind(self, kind: str) -> dict[str, list[Hit]]:
        out: dict[str, list[Hit]] = defaultdict(list)
        for h in self.hits:
            if self.labels[h.ip][1] == kind:
                out[h.ip].append(h)
        return out


def load(result: SimulationResult) -> Sample:
    return Sample(result, read_log(result.log_path), read_labels(result.labels_path),
                  read_ranges(result.ranges_dir))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """Two hours of a classic ``/p/<id>`` shop (seed 1) with every kind."""
    return load(simulate(tmp_path_factory.mktemp("sim"), seed=1, hours=2, clients=150))


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# --- determinism ------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path, sample: Sample) -> None:
    again = simulate(tmp_path, seed=1, hours=2, clients=150)
    assert files(tmp_path) == files(sample.result.log_path.parent)
    assert again.lines == sample.result.lines


def test_different_seed_gives_different_traffic(tmp_path: Path, sample: Sample) -> None:
    other = simulate(tmp_path, seed=2, hours=2, clients=150)
    assert other.log_path.read_bytes() != sample.result.log_path.read_bytes()
    assert other.labels_path.read_bytes() != sample.result.labels_path.read_bytes()


def test_start_sets_the_period_and_the_browser_generation(tmp_path: Path) -> None:
    later = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    a = simulate(tmp_path / "a", seed=4, hours=0.5, clients=40)
    b = simulate(tmp_path / "b", seed=4, hours=0.5, clients=40, start=later)
    hits_a, hits_b = read_log(a.log_path), read_log(b.log_path)
    assert hits_a[0].ts >= DEFAULT_START and hits_a[-1].ts < a.end
    assert hits_b[0].ts >= later and hits_b[-1].ts < b.end

    def newest_chrome(hits: list[Hit]) -> int:
        return max(int(m[1]) for h in hits if (m := re.search(r"Chrome/(\d+)", h.agent)))

    assert newest_chrome(hits_b) >= newest_chrome(hits_a) + 8  # ~9 months of releases


# --- format and labels ------------------------------------------------------------------


def test_every_line_is_strict_combined_and_time_sorted(sample: Sample) -> None:
    assert len(sample.hits) == sample.result.lines > 5000
    times = [h.ts for h in sample.hits]
    assert times == sorted(times), "timestamps must never go backwards"
    assert sample.result.start <= times[0] and times[-1] < sample.result.end
    for h in sample.hits:
        assert str(ipaddress.ip_address(h.ip)) == h.ip, "addresses are normalized"


def test_labels_cover_exactly_the_addresses_in_the_log(sample: Sample) -> None:
    assert {h.ip for h in sample.hits} == set(sample.labels)
    for label, kind in sample.labels.values():
        assert KIND_LABELS[kind] == label


def test_every_kind_is_present_and_counted(sample: Sample) -> None:
    kinds = {kind for _, kind in sample.labels.values()}
    assert kinds == set(KINDS)
    assert sum(sample.result.clients_by_kind.values()) == 150
    assert sample.result.clients_by_kind == kind_counts(150)
    per_kind: dict[str, int] = defaultdict(int)
    for _, kind in sample.labels.values():
        per_kind[kind] += 1
    assert sample.result.addresses_by_kind == {k: per_kind[k] for k in KINDS}


def test_label_mix_is_mostly_people(sample: Sample) -> None:
    counts = kind_counts(150)
    humans = sum(n for k, n in counts.items() if KIND_LABELS[k] == "human")
    good = sum(n for k, n in counts.items() if KIND_LABELS[k] == "good_bot")
    assert 0.65 <= humans / 150 <= 0.75
    assert 0.05 <= good / 150 <= 0.08
    assert 2 <= counts["shared_nat"] <= 5 and counts["vpn"] >= 2


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=100, max_value=200_000))
def test_kind_counts_add_up_and_include_every_kind(clients: int) -> None:
    counts = kind_counts(clients)
    assert sum(counts.values()) == clients
    assert all(counts[k] >= 1 for k in KINDS)


def test_addresses_are_public_and_never_shared_between_labels(sample: Sample) -> None:
    for ip in sample.labels:
        address = ipaddress.ip_address(ip)
        assert address.is_global and not address.is_multicast and not address.is_reserved, ip
    v6_people = [ip for ip, (_, kind) in sample.labels.items() if kind == "human" and ":" in ip]
    people = [ip for ip, (_, kind) in sample.labels.items() if kind == "human"]
    assert 0.03 <= len(v6_people) / len(people) <= 0.25
    slash16 = {ip.rsplit(".", 2)[0] for ip in people if ":" not in ip}
    assert len(slash16) > 0.8 * len(people) * 0.9, "people spread over many /16s"


# --- ranges -----------------------------------------------------------------------------


def test_good_bots_are_inside_their_published_ranges(sample: Sample) -> None:
    for kind, ranges in (("googlebot", "googlebot"), ("bingbot", "bingbot"),
                         ("monitor", "monitor")):
        ips = [ip for ip, (_, k) in sample.labels.items() if k == kind]
        assert ips
        assert all(inside(ip, sample.ranges[ranges]) for ip in ips), kind


def test_fake_googlebots_and_vpns_come_from_the_cloud_not_google(sample: Sample) -> None:
    for kind in ("fake_googlebot", "vpn"):
        ips = [ip for ip, (_, k) in sample.labels.items() if k == kind]
        assert ips
        assert not any(inside(ip, sample.ranges["googlebot"]) for ip in ips)
        assert all(inside(ip, sample.ranges["cloud"]) for ip in ips), kind
    fakes = sample.by_kind("fake_googlebot")
    assert all("Googlebot/2.1" in h.agent for hits in fakes.values() for h in hits)


def test_residential_kinds_are_outside_every_range(sample: Sample) -> None:
    everything = [n for nets in sample.ranges.values() for n in nets]
    for ip, (_, kind) in sample.labels.items():
        if kind in {"human", "bouncer", "returning", "in_app", "hotlink", "shared_nat", "swarm"}:
            assert not inside(ip, everything), (ip, kind)


def test_range_files_are_in_the_operators_formats(sample: Sample) -> None:
    ranges_dir = sample.result.ranges_dir
    google = json.loads((ranges_dir / "googlebot.json").read_text())
    assert any("ipv4Prefix" in p for p in google["prefixes"])
    assert any("ipv6Prefix" in p for p in google["prefixes"])
    assert datetime.fromisoformat(google["creationTime"]) < DEFAULT_START.replace(tzinfo=None)
    aws = json.loads((ranges_dir / "ip-ranges.json").read_text())
    assert any(p["service"] == "EC2" for p in aws["prefixes"])
    assert aws["ipv6_prefixes"] and aws["syncToken"].isdigit()


# --- behaviour --------------------------------------------------------------------------


def test_people_fetch_assets_with_their_page_as_referer(sample: Sample) -> None:
    people = sample.by_kind("human")
    with_assets = 0
    for hits in people.values():
        assets = [h for h in hits if ASSET.search(h.path)]
        pages = [h for h in hits if not ASSET.search(h.path)]
        assert len({h.agent for h in hits}) == 1, "one agent per person"
        if assets:
            with_assets += 1
            # referers name the page, unless the browser never sends one (privacy settings)
            if any(h.referer != "-" for h in hits):
                assert all(h.referer.startswith("https://") for h in assets)
            # an asset follows its page within about a second
            page_times = {h.ts for h in pages}
            assert all(any(0 <= (a.ts - t).total_seconds() <= 2 for t in page_times)
                       for a in assets)
    assert with_assets >= 0.9 * len(people)
    statuses = {h.status for hits in people.values() for h in hits}
    assert {200, 304, 302} <= statuses
    assert any(h.method == "POST" and h.path == "/cart/add" for v in people.values() for h in v)


def test_library_scrapers_and_crawlers_fetch_no_assets(sample: Sample) -> None:
    for kind in ("library_scraper", "browser_crawler_fast", "browser_crawler_slow", "swarm",
                 "fake_googlebot", "price_poller"):
        hits = [h for v in sample.by_kind(kind).values() for h in v]
        assert hits and not any(ASSET.search(h.path) for h in hits), kind
    headless = [h for v in sample.by_kind("headless").values() for h in v]
    assert any(ASSET.search(h.path) for h in headless)
    assert all("Headless" in h.agent or "PhantomJS" in h.agent for h in headless)


def test_shared_nat_addresses_carry_many_agents(sample: Sample) -> None:
    for hits in sample.by_kind("shared_nat").values():
        # 10-40 people; a few may share a byte-identical agent
        assert 8 <= len({h.agent for h in hits}) <= 40


def test_swarm_members_share_an_agent_and_split_the_catalogue(sample: Sample) -> None:
    campaigns: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for ip, hits in sample.by_kind("swarm").items():
        agents = {h.agent for h in hits}
        assert len(agents) == 1, "every member of a swarm sends the same agent"
        assert 5 <= len(hits) <= 40 and not any(h.referer != "-" for h in hits)
        campaigns[agents.pop()][ip] = {h.path for h in hits}
    for members in campaigns.values():
        assert 30 <= len(members) <= 200
        seen: set[str] = set()
        for paths in members.values():
            assert not paths & seen, "members fetch disjoint slices"
            seen |= paths


def test_ua_rotator_changes_agent_every_few_requests(sample: Sample) -> None:
    for hits in sample.by_kind("ua_rotator").values():
        assert len({h.agent for h in hits}) >= len(hits) / 8


def test_monitors_poll_one_path_on_a_clock(sample: Sample) -> None:
    for hits in sample.by_kind("monitor").values():
        assert len({h.path for h in hits}) == 1 and hits[0].path in {"/", "/health"}
        gaps = {round((b.ts - a.ts).total_seconds() / 60) for a, b in pairwise(hits)}
        assert len(gaps) == 1 and gaps <= {1, 2, 3, 5}
        assert "UptimeRobot" in hits[0].agent


def test_price_pollers_repeat_one_product_set_and_skip_product_pages(sample: Sample) -> None:
    for hits in sample.by_kind("price_poller").values():
        paths = [h.path for h in hits]
        assert not any(re.fullmatch(r"/p/\d+", p) for p in paths)
        if len(paths) > len(set(paths)):  # more than one round in the window
            assert len(set(paths)) <= 150


def test_probes_ask_for_things_that_do_not_exist(sample: Sample) -> None:
    hits = [h for v in sample.by_kind("probe").values() for h in v]
    assert sum(h.status == 404 for h in hits) > 0.5 * len(hits)
    assert any(h.path in {"/.env", "/wp-login.php", "/.git/config"} for h in hits)


def test_crawlers_fetch_robots_txt(sample: Sample) -> None:
    crawlers = [h for k in ("googlebot", "bingbot") for v in sample.by_kind(k).values()
                for h in v]
    assert any(h.path == "/robots.txt" for h in crawlers)


def test_some_scraper_walks_product_ids_in_order(sample: Sample) -> None:
    assert sample.result.layout == "classic"
    best = 0
    for kind in ("library_scraper", "browser_crawler_fast", "browser_crawler_slow"):
        for hits in sample.by_kind(kind).values():
            ids = [int(m[1]) for h in hits if (m := re.fullmatch(r"/p/(\d+)", h.path))]
            run = 1
            for a, b in pairwise(ids):
                run = run + 1 if b == a + 1 else 1
                best = max(best, run)
    assert best >= 20


@pytest.mark.parametrize("seed", range(len(LAYOUTS)))
def test_each_seed_picks_a_layout_and_writes_valid_logs(tmp_path: Path, seed: int) -> None:
    result = simulate(tmp_path, seed=seed, hours=0.25, clients=30)
    assert result.layout == LAYOUTS[seed].name
    hits = read_log(result.log_path)
    assert {h.ip for h in hits} == set(read_labels(result.labels_path))


# --- people vary, like real visitors ------------------------------------------------------

INDIVIDUALS = ("human", "bouncer", "returning", "in_app", "hotlink", "vpn")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """A whole day of a ``/<slug>-p-<id>.html`` shop (seed 3): every person's later visits."""
    return load(simulate(tmp_path_factory.mktemp("day"), seed=3, hours=24, clients=400))


@dataclass(frozen=True)
class Visit:
    kind: str
    agent: str
    pages: list[Hit]
    assets: list[Hit]


def visits(sample: Sample, kinds: Iterable[str]) -> list[Visit]:
    """Sessions (30 minutes of silence end one) of each address and agent of ``kinds``."""
    out: list[Visit] = []
    for kind in kinds:
        for hits in sample.by_kind(kind).values():
            by_agent: dict[str, list[Hit]] = defaultdict(list)
            for h in hits:
                by_agent[h.agent].append(h)
            for agent, mine in by_agent.items():
                start = 0
                for i in range(1, len(mine) + 1):
                    if i == len(mine) or (mine[i].ts - mine[i - 1].ts).total_seconds() > 1800:
                        part = mine[start:i]
                        out.append(Visit(kind, agent, [h for h in part if not ASSET.search(h.path)],
                                         [h for h in part if ASSET.search(h.path)]))
                        start = i
    return out


def test_about_a_third_of_visits_are_one_page(day: Sample) -> None:
    browsing = [v for v in visits(day, INDIVIDUALS) if v.pages]
    one = sum(len(v.pages) == 1 for v in browsing) / len(browsing)
    few = sum(len(v.pages) <= 3 for v in browsing) / len(browsing)
    assert 0.25 <= one <= 0.5, one
    assert 0.45 <= few <= 0.7, few
    bounces = [v for v in visits(day, ["bouncer"]) if v.pages]
    assert all(len(v.pages) <= 3 for v in bounces)
    bare = sum(not v.assets for v in bounces) / len(bounces)
    assert 0.1 <= bare <= 0.5, "some bounces load the page and nothing else"


def test_returning_visitors_find_the_theme_in_their_cache(day: Sample) -> None:
    def per_page(kind: str) -> tuple[float, float]:
        vs = [v for v in visits(day, [kind]) if v.pages]
        assets = [a for v in vs for a in v.assets]
        n_pages = sum(len(v.pages) for v in vs)
        return len(assets) / n_pages, sum(a.status == 304 for a in assets) / len(assets)

    cold, cold_304 = per_page("human")
    warm, warm_304 = per_page("returning")
    assert warm < 0.8 * cold and warm_304 > 0.4 > cold_304
    theme = re.compile(r"\.(?:css|js|woff2?)(?:\?|$)")
    returning = [v for v in visits(day, ["returning"]) if v.pages]
    no_theme = sum(not any(theme.search(a.path) and a.status == 200 for a in v.assets)
                   for v in returning) / len(returning)
    assert no_theme > 0.7, "a warm cache does not download the css/js/fonts again"


def test_some_people_read_for_a_long_time(day: Sample) -> None:
    long_reads = [v for v in visits(day, ["human"]) if len(v.pages) >= 20]
    assert long_reads
    for v in long_reads:
        assert len(v.assets) >= len(v.pages), "a long read still loads pictures"
        gaps = [(b.ts - a.ts).total_seconds() for a, b in pairwise(v.pages)]
        assert sorted(gaps)[len(gaps) // 2] >= 2, "and takes its time"


def test_referers_are_there_except_when_they_are_not(day: Sample) -> None:
    landings = [v.pages[0] for v in visits(day, INDIVIDUALS) if v.pages]
    direct = sum(h.referer == "-" for h in landings) / len(landings)
    assert 0.2 <= direct <= 0.5
    engines = ("google.", "bing.com", "duckduckgo.com", "ecosia.org", "yahoo.com", "yandex.ru")
    assert sum(any(e in h.referer for e in engines) for h in landings) > 0.25 * len(landings)


def test_in_app_browsers_arrive_from_their_app(day: Sample) -> None:
    apps = ("Instagram", "FBAN/FBIOS", "FB_IAB", "musical_ly", "Pinterest", "GSA/", "Snapchat",
            "LinkedInApp")
    vs = [v for v in visits(day, ["in_app"]) if v.pages]
    assert vs and all(any(a in v.agent for a in apps) for v in vs)
    shims = {"https://l.instagram.com/", "https://m.facebook.com/", "https://l.facebook.com/",
             "https://www.tiktok.com/", "https://www.pinterest.com/", "https://www.google.com/",
             "https://www.linkedin.com/", "-"}
    assert all(v.pages[0].referer in shims for v in vs)
    instagram = [v for v in vs if "Instagram" in v.agent]
    assert instagram and any(v.pages[0].referer == "https://l.instagram.com/" for v in instagram)


def test_old_and_odd_agents_are_a_few_percent(day: Sample) -> None:
    agents = [hits[0].agent for kind in INDIVIDUALS if kind != "in_app"
              for hits in day.by_kind(kind).values()]
    old = re.compile(r"iPhone OS 1[2-6]_|CPU OS 12_|Windows NT 6\.[13]|Chrome/(?:8\d|10\d|11\d)\.|"
                     r"Trident/|MSOffice|Version/1[45]\.\d(?:\.\d)? Safari|CrOS")
    share = sum(bool(old.search(a)) for a in agents) / len(agents)
    assert 0.01 <= share <= 0.12, share


def test_hotlinks_are_one_or_two_stray_requests(day: Sample) -> None:
    strays = day.by_kind("hotlink")
    assert len(strays) >= 10
    images = favicons = robots = 0
    for hits in strays.values():
        first = hits[0]
        if ASSET.search(first.path) and "favicon" not in first.path:
            images += 1
            assert ".example/" not in first.referer, "embedded elsewhere, not on the shop"
        favicons += all(h.path == "/favicon.ico" for h in hits)
        robots += all(h.path == "/robots.txt" for h in hits)
    assert images >= 3 and favicons + robots >= 1


def test_previews_fetch_a_page_and_its_picture_now_and_then(day: Sample) -> None:
    previews = day.by_kind("preview")
    assert len(previews) >= 3
    declared = re.compile(r"facebookexternalhit|Twitterbot|Slackbot|WhatsApp|TelegramBot|"
                          r"Discordbot|LinkedInBot|Feedly|inoreader")
    for hits in previews.values():
        assert all(declared.search(h.agent) for h in hits)
        assert all(h.referer == "-" for h in hits)
        assert len(hits) <= 40, "a page now and then, or a feed every hour or more"
        assert sum(not ASSET.search(h.path) for h in hits) >= 1


# --- size and interfaces ----------------------------------------------------------------


def test_estimate_lines_is_close(tmp_path: Path) -> None:
    result = simulate(tmp_path, seed=5, hours=3, clients=400)
    assert abs(result.lines - estimate_lines(3, 400)) < 0.2 * result.lines
    assert clients_for_lines(estimate_lines(24, 1000), 24) == pytest.approx(1000, abs=1)


def test_rejects_nonsense_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hours"):
        simulate(tmp_path, hours=0)
    with pytest.raises(ValueError, match="clients"):
        simulate(tmp_path, clients=-1)
    with pytest.raises(ValueError, match="seed"):
        simulate(tmp_path, seed=-3)
    assert not (tmp_path / "access.log").exists()


def test_module_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--seed", "3", "--hours", "0.2", "--clients", "20"]) == 0
    assert "lines" in capsys.readouterr().out
    assert (tmp_path / "access.log").stat().st_size > 0


# --- the committed fixture --------------------------------------------------------------


def test_committed_fixture_matches_its_documented_command(tmp_path: Path) -> None:
    readme = (FIXTURE / "README.md").read_text(encoding="utf-8")
    m = re.search(r"python -m botguard\.simulate --out fixtures/shop --seed (\d+) "
                  r"--hours ([\d.]+) --clients (\d+)", readme)
    assert m, "README must state the regeneration command"
    seed, hours, clients = int(m[1]), float(m[2]), int(m[3])
    simulate(tmp_path, seed=seed, hours=hours, clients=clients)
    committed = {k: v for k, v in files(FIXTURE).items() if k != "README.md"}
    assert committed == files(tmp_path), "regenerate fixtures/shop with the README command"
    assert (FIXTURE / "access.log").stat().st_size < 1_600_000
    kinds = {kind for _, kind in read_labels(FIXTURE / "labels.csv").values()}
    assert kinds == set(KINDS)
