"""Throughput and peak memory of botguard against its peers; writes ``bench/results.md``.

    .venv/bin/python bench/run.py                     # 0.2M, 2M and 10M lines, best of 3
    .venv/bin/python bench/run.py --quick             # 0.2M lines only
    .venv/bin/python bench/run.py --sizes 0.2,2 --repeat 5 --profile

Every tool runs as its own process on the same file, and the tools take turns inside each
repetition, so a busy machine slows them all alike; the best wall time of the repetitions is
reported, and the highest peak RSS. Logs are generated once into ``--cache`` (never into the
repository) and reused. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import formats  # sibling modules, found through the path set above
import peers

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results.md"
EXPORT_BENCH = BENCH / "bench_export.py"
SLICE_MINUTES = 5
BOTGUARD_TOOLS = ("botguard parse", "botguard features", "botguard analyze")
SLOW_PEERS = ("goaccess", "fail2ban-regex")


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One run of one command."""

    seconds: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str


#: GNU time reports the peak RSS of exactly the command. ``wait4`` on a direct child is not
#: enough: Linux folds the forking parent's RSS at exec into the child's high-water mark, so a
#: small peer would inherit this script's footprint.
GNU_TIME = "/usr/bin/time"


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root``, with its depth (1 = child), from /proc/PID/task/*/children."""
    found: dict[int, int] = {}
    todo = [(root, 0)]
    while todo:
        pid, depth = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                found[kid] = depth + 1
                todo.append((kid, depth + 1))
    return found


class HelperWatch(threading.Thread):
    """Peak RSS of the helper processes a command starts (botguard's agent process and
    multiprocessing's resource tracker): GNU time reports the command's own process only.
    Each helper's high-water mark (VmHWM) is polled; their sum is added to the command's
    peak, an upper bound of what the run held at once."""

    def __init__(self, root: int, min_depth: int) -> None:
        super().__init__(daemon=True)
        self.root, self.min_depth = root, min_depth
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while True:  # polled at once, then every 0.1 s, and once more after the command ends
            for pid, depth in _descendants(self.root).items():
                if depth < self.min_depth:
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
                if m:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(m.group(1)))
            if self.done.wait(0.1):
                return

    def kib(self) -> float:
        self.done.set()
        self.join()
        return float(sum(self.peaks.values()))


def measure(cmd: list[str], *, env: dict[str, str] | None = None,
            timeout_s: float | None = None) -> Sample:
    """Run ``cmd`` to completion: wall time from fork to reap, peak RSS from GNU time plus
    the peaks of any helper processes it starts."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        wrapped = cmd
        if Path(GNU_TIME).exists():
            wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd]
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=REPO)
        helpers = HelperWatch(proc.pid, min_depth=2 if wrapped is not cmd else 1)
        helpers.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - start
        helper_kib = helpers.kib()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        kib = float(usage.ru_maxrss)  # fallback: an upper bound (the largest child so far)
        report = Path(rss.name).read_text().split()
        if report and report[-1].isdigit():
            # The command's own peak; without GNU time, ru_maxrss above already covers the
            # largest of its descendants, helpers included.
            kib = float(report[-1]) + helper_kib
        out.seek(0)
        err.seek(0)
        return Sample(seconds, kib / 1024, proc.returncode,
                      out.read().decode(errors="replace"), err.read().decode(errors="replace"))


@dataclass
class Row:
    """Best-of-N result of one tool on one log."""

    tool: str
    lines: int
    size_bytes: int
    seconds: float | None = None
    rss_mib: float | None = None
    note: str = ""
    samples: list[Sample] = field(default_factory=list)

    @property
    def lines_per_s(self) -> float | None:
        return self.lines / self.seconds if self.seconds else None

    @property
    def mb_per_s(self) -> float | None:
        return self.size_bytes / 1e6 / self.seconds if self.seconds else None

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        if sample.returncode != 0:
            tail = (sample.stderr.strip() or sample.stdout.strip()).splitlines()[-1:]
            self.note = f"failed (exit {sample.returncode}): {' '.join(tail)[:160]}"
            return
        self.seconds = min(self.seconds or sample.seconds, sample.seconds)
        self.rss_mib = max(self.rss_mib or 0.0, sample.rss_mib)


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class LogFile:
    path: Path
    lines: int
    size_bytes: int
    generator: str


def size_label(millions: float) -> str:
    return f"{millions:g}M"


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            count += block.count(b"\n")
    return count


def simulator_available() -> bool:
    try:
        from botguard.simulate import simulate  # noqa: F401
    except ImportError:
        return False
    return True


def _simulate(out: Path, seed: int, hours: float, clients: int) -> tuple[Path, int]:
    from botguard.simulate import simulate

    result = simulate(out, seed=seed, hours=hours, clients=clients)
    return Path(result.log_path), int(result.lines)


def simulate_near(target: int, out: Path, seed: int) -> tuple[Path, int, str]:
    """Simulate about ``target`` lines (±20%) of one day: lines scale with hours × clients.

    The simulator's own ``clients_for_lines`` aims when it has one, else a small probe day
    gives lines per client; either way one correction follows if the result is off.
    """
    hours = 24.0
    try:
        from botguard.simulate import clients_for_lines

        clients = clients_for_lines(target, hours)
    except ImportError:
        with tempfile.TemporaryDirectory(prefix="botguard-bench-probe-") as probe:
            _, probe_lines = _simulate(Path(probe), seed, hours, 100)
        clients = max(20, round(target / max(probe_lines / 100, 1.0)))
    for _ in range(3):
        if out.exists():
            shutil.rmtree(out)
        log, lines = _simulate(out, seed, hours, clients)
        if abs(lines - target) <= 0.2 * target:
            break
        clients = max(20, round(clients * target / max(lines, 1)))
    return log, lines, f"simulate(seed={seed}, hours={hours:g}, clients={clients})"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{v2} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v2} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.{v2} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36",
)
_BOTS = (
    "python-requests/2.31.0", "Scrapy/2.11.0 (+https://scrapy.org)", "curl/8.4.0",
    "Go-http-client/1.1", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
)


def synthesize(target: int, path: Path, seed: int) -> tuple[int, str]:
    """Stand-in for the simulator: a day of shop traffic from humans and bots, time-ordered.

    Humans browse products with their assets and site referers at human pace; bots walk the
    catalogue in id order with scripted or spoofed agents. Coarser than the simulator, but the
    parser, sessionizer and features get the same shape of work (many clients, many agents).
    """
    rng = random.Random(seed)
    n_clients = max(50, target // 150)
    clients: list[tuple[str, str, bool]] = []
    for _ in range(n_clients):
        ip = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        bot = rng.random() < 0.2
        if bot:
            agent = rng.choice(_BOTS) if rng.random() < 0.7 else rng.choice(_BROWSERS)
        else:
            agent = rng.choice(_BROWSERS)
        agent = agent.format(v=rng.randint(110, 124), v2=rng.randint(0, 6))
        clients.append((ip, agent, bot))
    weights = [12.0 if bot else 1.0 for _, _, bot in clients]
    walk = [0] * n_clients
    start = datetime(2024, 5, 1, tzinfo=UTC)
    step = 86_400 / target
    stamps: dict[int, str] = {}
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target:
            batch = min(100_000, target - written)
            picks = rng.choices(range(n_clients), weights=weights, k=batch)
            out: list[str] = []
            for offset, who in enumerate(picks):
                second = int((written + offset) * step)
                stamp = stamps.get(second)
                if stamp is None:
                    t = start + timedelta(seconds=second)
                    stamp = (f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:"
                             f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000")
                    stamps = {second: stamp}
                ip, agent, bot = clients[who]
                if bot:
                    walk[who] += 1
                    target_path, referer = f"/products/item-{walk[who]}", "-"
                    status = 404 if walk[who] % 37 == 0 else 200
                else:
                    product = int(rng.paretovariate(1.2)) % 5000
                    r = rng.random()
                    if r < 0.5:
                        target_path = f"/static/img/p{product}-{int(r * 6)}.jpg"
                    elif r < 0.6:
                        target_path = "/assets/app.css"
                    else:
                        target_path = f"/products/item-{product}?ref=home"
                    referer = "https://shop.example/"
                    status = 304 if r < 0.05 else 200
                size = rng.randint(200, 60_000)
                out.append(f'{ip} - - [{stamp}] "GET {target_path} HTTP/1.1" {status} {size} '
                           f'"{referer}" "{agent}"\n')
            fh.write("".join(out))
            written += batch
    return written, f"bench synthesizer (seed={seed}, clients={n_clients})"


def _cached_log(folder: Path) -> LogFile | None:
    """The log generated into ``folder`` earlier, if its file is still there and whole."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    path = Path(meta["path"])
    if path.exists() and path.stat().st_size == meta["bytes"]:
        return LogFile(path, meta["lines"], meta["bytes"], meta["generator"])
    return None


def _save_log(folder: Path, log: LogFile) -> LogFile:
    (folder / "meta.json").write_text(json.dumps({
        "path": str(log.path), "lines": log.lines, "bytes": log.size_bytes,
        "generator": log.generator}))
    return log


def ensure_log(millions: float, seed: int, cache: Path, generator: str) -> LogFile:
    """The cached log for this size, seed and generator; generated on first use."""
    use_sim = generator == "simulate" or (generator == "auto" and simulator_available())
    kind = "sim" if use_sim else "synth"
    folder = cache / f"{kind}-seed{seed}-{size_label(millions)}"
    cached = _cached_log(folder)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    target = round(millions * 1_000_000)
    print(f"  generating {size_label(millions)} lines log ({kind}) in {folder} ...", flush=True)
    t0 = time.perf_counter()
    if use_sim:
        try:
            path, lines, how = simulate_near(target, folder / "sim", seed)
            lines = count_lines(path)
        except Exception as exc:  # the simulator is someone else's code: fall back, say so
            if generator == "simulate":
                raise
            print(f"  simulator failed ({type(exc).__name__}: {exc}); using the synthesizer",
                  flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            return ensure_log(millions, seed, cache, "synthetic")
    else:
        path = folder / "access.log"
        lines, how = synthesize(target, path, seed)
    print(f"  ... {lines:,} lines in {time.perf_counter() - t0:.0f} s", flush=True)
    return _save_log(folder, LogFile(path, lines, path.stat().st_size, how))


_STAMP = re.compile(rb"\[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]")


def _epoch(line: bytes) -> float | None:
    m = _STAMP.search(line)
    if m is None:
        return None
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    t = datetime(int(year), _MONTHS.index(mon.decode()) + 1, int(day), int(hh), int(mm), int(ss),
                 tzinfo=UTC)
    offset = (int(zh) * 60 + int(zm)) * (1 if sign == b"+" else -1)
    return t.timestamp() - offset * 60


def split_tail(log: LogFile, folder: Path, minutes: int) -> tuple[Path, Path, int]:
    """Split ``log`` into the lines before its last ``minutes`` and the slice itself."""
    before, recent = folder / "before.log", folder / f"last-{minutes}min.log"
    if not (before.exists() and recent.exists()):
        lines = log.path.read_bytes().splitlines(keepends=True)
        stamps = [_epoch(line) for line in lines]
        latest = max(s for s in stamps if s is not None)
        cutoff = latest - minutes * 60
        folder.mkdir(parents=True, exist_ok=True)
        recent.write_bytes(b"".join(x for x, s in zip(lines, stamps, strict=True)
                                    if s is not None and s > cutoff))
        before.write_bytes(b"".join(x for x, s in zip(lines, stamps, strict=True)
                                    if s is None or s <= cutoff))
    return before, recent, count_lines(recent)


# --------------------------------------------------------------------------- the runs


def botguard_exe() -> str:
    beside = Path(sys.executable).with_name("botguard")
    if beside.exists():
        return str(beside)
    found = shutil.which("botguard")
    if found is None:
        sys.exit("botguard is not installed in this environment (run `make install`)")
    return found


def botguard_env(data_dir: Path) -> dict[str, str]:
    """No ranges to load, no colour, no progress bars."""
    return {**os.environ, "BOTGUARD_DATA": str(data_dir), "NO_COLOR": "1", "TERM": "dumb"}


def bench_size(log: LogFile, args: argparse.Namespace, work: Path) -> list[Row]:
    """All tools on one log, ``args.repeat`` times, the tools taking turns."""
    bg = botguard_exe()
    data = work / "data"
    data.mkdir(exist_ok=True)
    env = botguard_env(data)
    fmt = ["--format", "combined"]
    commands: dict[str, tuple[list[str] | None, dict[str, str] | None, str]] = {
        "botguard parse": ([bg, "parse", str(log.path), *fmt, "--output",
                            str(work / "x.parquet"), "--json"], env, ""),
        "botguard features": ([bg, "features", str(log.path), *fmt, "--output",
                               str(work / "f.parquet"), "--json"], env, ""),
        "botguard analyze": ([bg, "analyze", str(log.path), *fmt, "--out", str(work / "bgout"),
                              "--json", "--force"], env, ""),
    }
    floor = peers.polars_read(log.path)
    others = [peers.goaccess(log.path, work), peers.fail2ban(log.path, work), floor]
    for peer in others:
        if peer.name in SLOW_PEERS and log.lines > args.peers_max_lines:
            commands[peer.name] = (None, None, f"skipped: {log.lines:,} lines > "
                                               f"--peers-max-lines {args.peers_max_lines:,}")
        elif args.no_peers and peer.name in SLOW_PEERS:
            commands[peer.name] = (None, None, "skipped: --no-peers")
        else:
            commands[peer.name] = (peer.cmd, None, peer.note if peer.cmd else f"n/a: {peer.note}")
    rows = {name: Row(name, log.lines, log.size_bytes, note=note)
            for name, (_, _, note) in commands.items()}
    for rep in range(args.repeat):
        for name, (cmd, cmd_env, _) in commands.items():
            row = rows[name]
            if cmd is None or row.note.startswith("failed"):
                continue
            sample = measure(cmd, env=cmd_env, timeout_s=args.timeout)
            row.add(sample)
            shown = f"{sample.seconds:7.2f} s  {sample.rss_mib:7.0f} MiB"
            if sample.returncode != 0:
                shown = row.note
            print(f"    [{rep + 1}/{args.repeat}] {name:<18} {shown}", flush=True)
    banned = rows["fail2ban-regex"]
    for sample in banned.samples[:1]:
        found = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched", sample.stdout)
        if found:
            banned.note += f"; {int(found.group(3)):,} lines matched"
    parsed = rows["botguard parse"]
    for sample in parsed.samples[:1]:
        try:
            stats = json.loads(sample.stdout)["parse"]
            if stats.get("rejected"):
                parsed.note = f"{stats['rejected']:,} of {stats['lines']:,} lines rejected"
        except (ValueError, KeyError, TypeError):
            pass
    return list(rows.values())


def bench_formats(log: LogFile, args: argparse.Namespace, work: Path) -> list[Row]:
    """``parse`` of the same hits written as Cloudflare JSON lines and as AWS ALB logs, beside
    the bare Polars NDJSON read of the JSON file."""
    bg = botguard_exe()
    env = botguard_env(work / "data")
    logs = formats.ensure_format_logs(log.path, args.cache / f"formats-{log.path.parent.parent.name}", bg)
    commands: dict[str, tuple[list[str], Path]] = {}
    for name, (path, _, _) in logs.items():
        commands[f"botguard parse --format {name}"] = (
            [bg, "parse", str(path), "--format", name, "--output", str(work / "fmt.parquet"), "--json"], path)
    path = logs["cloudflare"][0]
    commands["polars read_ndjson (cloudflare)"] = ([*formats.ndjson_floor(), str(path)], path)
    rows = {}
    for name, (_, path) in commands.items():
        found = next(v for v in logs.values() if v[0] == path)
        rows[name] = Row(name, found[1], found[2])
    for rep in range(args.repeat):
        for name, (cmd, _) in commands.items():
            sample = measure(cmd, env=env if name.startswith("botguard") else None, timeout_s=args.timeout)
            rows[name].add(sample)
            print(f"    [{rep + 1}/{args.repeat}] {name:<34} {sample.seconds:7.2f} s  {sample.rss_mib:7.0f} MiB",
                  flush=True)
    return list(rows.values())


def bench_startup(repeat: int = 5) -> Row:
    row = Row("botguard --help", 0, 0, note=f"best of {repeat}")
    for _ in range(repeat):
        row.add(measure([botguard_exe(), "--help"], env=botguard_env(Path(tempfile.gettempdir()))))
    return row


def ensure_flat_log(base: LogFile, days: int, seed: int, cache: Path) -> LogFile | None:
    """The same clients as ``base`` (a simulated day) over ``days`` days: lines grow, clients
    do not, so peak memory should not either beyond the sessions and sketches they add."""
    found = re.search(r"simulate\(seed=(\d+), hours=([\d.]+), clients=(\d+)\)", base.generator)
    if not found:
        return None
    clients = int(found.group(3))
    folder = cache / f"flat-seed{seed}-{clients}c-{days}d"
    cached = _cached_log(folder)
    if cached is not None:
        return cached
    print(f"  generating {days} days of the same {clients:,} clients in {folder} ...", flush=True)
    path, _ = _simulate(folder / "sim", seed, 24.0 * days, clients)
    lines = count_lines(path)
    how = f"simulate(seed={seed}, hours={24 * days}, clients={clients})"
    return _save_log(folder, LogFile(path, lines, path.stat().st_size, how))


def bench_flat(log: LogFile, args: argparse.Namespace, work: Path) -> list[Row]:
    """features and analyze on the same-clients log (memory flatness)."""
    bg = botguard_exe()
    data = work / "data"
    data.mkdir(exist_ok=True)
    env = botguard_env(data)
    commands = {
        "botguard features": [bg, "features", str(log.path), "--format", "combined", "--output",
                              str(work / "f.parquet"), "--json"],
        "botguard analyze": [bg, "analyze", str(log.path), "--format", "combined", "--out",
                             str(work / "bgout"), "--json", "--force"],
    }
    rows = {name: Row(name, log.lines, log.size_bytes) for name in commands}
    for rep in range(min(args.repeat, 2)):
        for name, cmd in commands.items():
            sample = measure(cmd, env=env, timeout_s=args.timeout)
            rows[name].add(sample)
            print(f"    [{rep + 1}] {name:<18} {sample.seconds:7.2f} s  {sample.rss_mib:7.0f} MiB",
                  flush=True)
    return list(rows.values())


def bench_incremental(base: LogFile, label: str, args: argparse.Namespace, work: Path, window: str | None = None) -> Row:
    """A cron run with ``--incremental``, as cron makes it: the state holds everything before
    the last minutes (an incremental run over the log as it was then), the same log has grown
    by the last minutes since, and each repetition reads it from a fresh copy of that state:
    only the new lines are read. With ``window`` (``state.window``) shorter than the log's
    day, the state holds two windows, as it does on every run after a deployment's first
    window: the steady state."""
    before, recent, lines = split_tail(base, base.path.parent / "incremental", SLICE_MINUTES)
    bg = botguard_exe()
    data = work / "data"
    data.mkdir(exist_ok=True)
    env = botguard_env(data)
    state = work / "state.db"
    for leftover in work.glob("state*.db*"):
        leftover.unlink()
    config: list[str] = []
    if window:
        conf = work / "incremental.yaml"
        conf.write_text(f"state:\n  window: {window}\n", encoding="utf-8")
        config = ["--config", str(conf)]
    name = f"analyze --incremental, last {SLICE_MINUTES} min of {label}" + (f", two {window} windows" if window else "")
    row = Row(name, lines, recent.stat().st_size)
    # One path throughout, as cron sees the live log: it is the earlier lines when the state
    # is made, then grows by the recent ones.
    live = work / "access.log"
    shutil.copyfile(before, live)
    prime = measure([bg, "analyze", str(live), "--format", "combined", "--state", str(state), "--incremental",
                     *config, "--out", str(work / "prime"), "--force", "--quiet"], env=env)
    if prime.returncode != 0:
        row.add(prime)
        row.note = "populating the state " + row.note
        return row
    with live.open("ab") as out, recent.open("rb") as src:
        shutil.copyfileobj(src, out)
    row.note = f"state of {count_lines(before):,} earlier lines ({state.stat().st_size / 1e6:.0f} MB); fresh copy each run"
    for _ in range(args.repeat):
        copy = work / "state-run.db"
        for leftover in work.glob("state-run.db*"):
            leftover.unlink()
        for part in work.glob("state.db*"):
            shutil.copy2(part, work / part.name.replace("state.db", "state-run.db"))
        row.add(measure([bg, "analyze", str(live), "--format", "combined", "--state", str(copy), "--incremental",
                         *config, "--out", str(work / "incr"), "--force", "--json"], env=env))
    live.unlink()
    return row


def bench_export(repeat: int) -> tuple[float | None, str]:
    """Best total of ``bench/bench_export.py``'s ``run()``, in a fresh process each time."""
    if not EXPORT_BENCH.exists():
        return None, "bench/bench_export.py not present"
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); import bench_export; "
            "print(json.dumps(bench_export.run(n=100_000), default=str))")
    best: float | None = None
    note = "100,000 entries, every export format"
    for _ in range(repeat):
        sample = measure([sys.executable, "-c", code])
        if sample.returncode != 0:
            return None, f"failed: {(sample.stderr.strip().splitlines() or ['?'])[-1][:160]}"
        total = float(json.loads(sample.stdout.strip().splitlines()[-1])["total_s"])
        best = total if best is None else min(best, total)
    return best, note


# --------------------------------------------------------------------------- profile


def profile_analyze(log: LogFile, work: Path, out: Path) -> list[tuple[str, float, float]]:
    """py-spy the analyze run; return (frame, self share, total share), hottest self first.

    ``--idle`` keeps the samples where Python waits on Polars' worker threads, which is where
    a lazy pipeline spends most of its wall time; ``--native`` would name the Rust frames but
    needs symbols the wheels do not ship.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        alt = Path(tempfile.gettempdir()) / "pyspy-venv" / "bin" / "py-spy"
        spy = str(alt) if alt.exists() else ""
    if not spy:
        print("  py-spy not found (pip install py-spy); no profile", flush=True)
        return []
    data = work / "data"
    data.mkdir(exist_ok=True)
    cmd = [spy, "record", "--idle", "--rate", "200", "--format", "speedscope", "-o", str(out),
           "--", botguard_exe(), "analyze", str(log.path), "--format", "combined",
           "--out", str(work / "prof"), "--force", "--quiet"]
    done = subprocess.run(cmd, env=botguard_env(data), capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        print(f"  py-spy failed: {done.stderr.strip()[-300:]}", flush=True)
        return []
    return hot_spots(out)


def hot_spots(speedscope: Path, top: int = 10) -> list[tuple[str, float, float]]:
    """Wall time charged to the innermost botguard function of each sample.

    Nearly all own time sits in ``LazyFrame.collect`` (Polars works outside Python), which
    says nothing about what to optimise; the botguard function that called it does. Samples
    with no botguard frame (imports, interpreter start) are charged to their leaf frame.
    Returns (function, charged share, share of samples it is anywhere on the stack).
    """
    doc = json.loads(speedscope.read_text())
    frames = doc["shared"]["frames"]

    def name(index: int) -> str:
        frame = frames[index]
        where = str(frame.get("file", ""))
        for marker in ("site-packages/", f"{REPO}/", "<frozen "):
            if marker in where:
                where = where.split(marker, 1)[1].rstrip(">")
        return f"{where}:{frame['name']}"

    def ours(index: int) -> bool:
        return f"{REPO}/botguard/" in str(frames[index].get("file", ""))

    charged: dict[str, float] = {}
    anywhere: dict[str, float] = {}
    weight_all = 0.0
    for prof in doc["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            weight_all += weight
            if not stack:
                continue
            mine = [i for i in stack if ours(i)]
            key = name(mine[-1] if mine else stack[-1])
            charged[key] = charged.get(key, 0.0) + weight
            for fn in {name(i) for i in stack}:
                anywhere[fn] = anywhere.get(fn, 0.0) + weight
    ranked = sorted(charged, key=lambda k: charged[k], reverse=True)[:top]
    return [(k, charged[k] / weight_all, anywhere[k] / weight_all) for k in ranked]


# --------------------------------------------------------------------------- report


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    if shutil.which("free"):
        free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()
        mem = next((f"{ln.split()[1]} GiB" for ln in free if ln.startswith("Mem:")), mem)
    return {"cpus": str(os.cpu_count()), "cpu model": model, "memory": mem,
            "load average at start": _loadavg(), "kernel": platform.release(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table(rows: list[Row], analyze_s: float | None) -> list[list[str]]:
    out = []
    for row in rows:
        ratio = (row.seconds / analyze_s) if row.seconds and analyze_s else None
        rates = [_num(row.lines_per_s, ",.0f"), _num(row.mb_per_s, ".1f")] if row.lines else [
            "—", "—"]
        out.append([row.tool, f"{row.lines:,}" if row.lines else "—", _num(row.seconds, ".2f"),
                    *rates,
                    _num(row.rss_mib, ",.0f"), "n/a" if ratio is None else f"{ratio:.2f}×",
                    row.note])
    return out


HEAD = ["tool", "lines", "seconds", "lines/s", "MB/s", "peak RSS MiB", "time ÷ analyze", "note"]


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in body]
    return "\n".join(lines)


def plain(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *body])


@dataclass(frozen=True)
class Target:
    name: str
    where: str
    measured: str
    ok: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "FAIL")


def evaluate(by_size: dict[str, list[Row]], startup: Row, incr: Row,
             flat: list[Row] | None = None) -> list[Target]:
    targets: list[Target] = []

    def rate(tool: str, label: str, floor: float, name: str) -> None:
        row = next(r for r in by_size[label] if r.tool == tool)
        v = row.lines_per_s
        targets.append(Target(name, label, _num(v, ",.0f") + " lines/s",
                              None if v is None else v >= floor))

    def ratio(label: str, peer: str, name: str, check: float, faster: bool) -> None:
        rows = {r.tool: r for r in by_size[label]}
        a, p = rows["botguard analyze"].seconds, rows[peer].seconds
        if a is None or p is None:
            targets.append(Target(name, label, rows[peer].note or "not measured", None))
            return
        times = p / a if faster else a / p
        ok = times >= check if faster else times <= check
        shown = (f"analyze at {times:.2f}× {peer}'s speed" if faster
                 else f"analyze takes {times:.2f}× the read's time")
        targets.append(Target(name, label, shown, ok))

    def memory(tool: str, label: str, limit: float, name: str) -> None:
        row = next(r for r in by_size[label] if r.tool == tool)
        v = row.rss_mib
        targets.append(Target(name, label, _num(v, ",.0f") + " MiB",
                              None if v is None else v <= limit))

    for label in by_size:
        rate("botguard parse", label, 1_000_000, "parse ≥ 1,000,000 lines/s")
        rate("botguard features", label, 500_000, "features ≥ 500,000 lines/s")
        rate("botguard analyze", label, 400_000, "analyze ≥ 400,000 lines/s (issue 4)")
        rate("botguard analyze", label, 500_000, "analyze ≥ 500,000 lines/s (issue 6)")
        ratio(label, "goaccess", "analyze ≥ 10× GoAccess (issue 6)", 10, True)
        ratio(label, "fail2ban-regex", "analyze ≥ 8× fail2ban-regex (issue 6)", 8, True)
        ratio(label, "polars read_csv", "analyze within 4× of bare Polars read (issue 6)", 4,
              False)
        memory("botguard parse", label, 1024, "parse peak RSS ≤ 1 GB")
        memory("botguard features", label, 1536, "features peak RSS ≤ 1.5 GB")
    if "10M" in by_size:
        memory("botguard analyze", "10M", 2048, "analyze peak RSS ≤ 2 GB at 10M")
        big = next(r for r in by_size["10M"] if r.tool == "botguard analyze").rss_mib
        small = (next(r for r in by_size["2M"] if r.tool == "botguard analyze").rss_mib
                 if "2M" in by_size else None)
        growth = big / small if big and small else None
        targets.append(Target("analyze RSS at 10M within 20% of 2M", "10M vs 2M",
                              "not measured" if growth is None else f"{growth:.2f}× the 2M RSS",
                              None if growth is None else growth <= 1.2))
    else:
        targets.append(Target("analyze peak RSS ≤ 2 GB at 10M (and ≤ 1.2× 2M)", "10M",
                              "not measured (10M not run)", None))
    if flat and "2M" in by_size:
        for tool in ("botguard features", "botguard analyze"):
            big = next(r for r in flat if r.tool == tool)
            small = next(r for r in by_size["2M"] if r.tool == tool).rss_mib
            growth = big.rss_mib / small if big.rss_mib and small else None
            targets.append(Target(
                f"{tool.split()[1]} RSS, same clients over {big.lines / 1e6:.1f}M lines, "
                "within 20% of 2M", "flat vs 2M",
                "not measured" if growth is None else f"{growth:.2f}× the 2M RSS",
                None if growth is None else growth <= 1.2))
    targets.append(Target("`botguard --help` < 1 s", "best of 5",
                          _num(startup.seconds, ".2f") + " s",
                          None if startup.seconds is None else startup.seconds < 1))
    targets.append(Target(f"incremental run ({SLICE_MINUTES} min slice, --incremental) < 2 s",
                          f"{incr.lines:,} lines", _num(incr.seconds, ".2f") + " s",
                          None if incr.seconds is None else incr.seconds < 2))
    return targets


def write_results(path: Path, info: dict[str, str], versions: dict[str, str],
                  logs: dict[str, LogFile], by_size: dict[str, list[Row]],
                  extra: list[Row], export: tuple[float | None, str], targets: list[Target],
                  args: argparse.Namespace, profile: list[tuple[str, float, float]],
                  profile_label: str = "",
                  flat: tuple[LogFile | None, list[Row]] = (None, []),
                  formats: list[Row] | None = None) -> None:
    parts = ["# botguard benchmark results", "",
             "Generated by `make bench` (`bench/run.py`); see `bench/README.md` for method. "
             f"Best wall time of {args.repeat} runs per tool (tools take turns within each run), "
             "highest peak RSS of those runs. MB = 10^6 bytes; RSS in MiB. "
             "\"time ÷ analyze\": the tool's seconds divided by `botguard analyze`'s "
             "(above 1 means slower than analyze).", "",
             "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in info.items()]
    parts += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions.items()]
    parts += ["", "## Throughput and memory", ""]
    for label, rows in by_size.items():
        log = logs[label]
        analyze = next(r for r in rows if r.tool == "botguard analyze").seconds
        parts += [f"### {label} lines — {log.lines:,} lines, {log.size_bytes / 1e6:,.0f} MB",
                  "", f"Log: `{log.path}` ({log.generator}).", "",
                  markdown(HEAD, table(rows, analyze)), ""]
    flat_log, flat_rows = flat
    if flat_log is not None and flat_rows:
        parts += [f"### Memory flatness — the 2M log's clients over {flat_log.lines:,} lines, "
                  f"{flat_log.size_bytes / 1e6:,.0f} MB", "",
                  f"Log: `{flat_log.path}` ({flat_log.generator}). Same clients as the 2M "
                  "log, more days: memory may grow only by what more days add per client "
                  "(sessions, sketch registers).", "",
                  markdown(HEAD, table(flat_rows, None)), ""]
    if formats:
        parts += ["### Cloud formats — the same hits as Cloudflare JSON lines and AWS ALB logs", "",
                  f"The first {formats[0].lines:,} hits of the 2M log, rewritten by `bench/formats.py`; "
                  "the floor is a bare `pl.read_ndjson` of the JSON file.", "",
                  markdown(HEAD, table(formats, None)), ""]
    parts += ["### Start-up and incremental", "",
              markdown([*HEAD[:-2], "note"],
                       [[*r[:-2], r[-1]] for r in table(extra, None)]), ""]
    total, note = export
    parts += [f"Export (`bench/bench_export.py`, {note}): "
              f"{_num(total, '.2f')} s total (target < 2 s).", ""]
    parts += ["## Targets", "", markdown(["target", "where", "measured", "verdict"],
                                         [[t.name, t.where, t.measured, t.verdict]
                                          for t in targets]), ""]
    if profile:
        parts += ["## Profile of `botguard analyze`", "",
                  f"py-spy on the {profile_label} log, wall clock (`--idle`; profiled runs "
                  "are slower than timed ones). Each sample is charged to the innermost "
                  "botguard function on its stack (Polars' `collect` is where the time is "
                  "spent, the caller is what to change); \"on stack\" is the share of samples "
                  "in which the function appears at all.", "",
                  markdown(["function", "charged", "on stack"],
                           [[f"`{n}`", f"{s:.1%}", f"{t:.1%}"] for n, s, t in profile]), ""]
    path.write_text("\n".join(parts))


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--no-formats", action="store_true",
                   help="skip the cloud-format parse runs (Cloudflare JSON, ALB)")
    p.add_argument("--sizes", default="0.2,2,10",
                   help="log sizes in millions of lines, comma separated (default 0.2,2,10)")
    p.add_argument("--quick", action="store_true", help="0.2M lines only")
    p.add_argument("--repeat", type=int, default=3, help="runs per tool; best is kept (3)")
    p.add_argument("--peers-max-lines", type=int, default=2_500_000,
                   help="skip GoAccess and fail2ban-regex on bigger logs (2,500,000)")
    p.add_argument("--no-peers", action="store_true", help="skip GoAccess and fail2ban-regex")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flat-days", type=int, default=10,
                   help="days of the 2M log's clients for the memory-flatness run (10)")
    p.add_argument("--no-flat", action="store_true", help="skip the memory-flatness run")
    p.add_argument("--generator", choices=("auto", "simulate", "synthetic"), default="auto",
                   help="botguard's simulator, or the bench's own synthesizer (auto: simulator "
                        "if importable)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "botguard-bench",
                   help="where generated logs are kept between runs (never the repository)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed")
    p.add_argument("--profile", action="store_true",
                   help="py-spy profile of analyze on the 2M log (or the largest below it)")
    p.add_argument("--results", type=Path, default=RESULTS, help="markdown output")
    args = p.parse_args(argv)
    args.sizes = [0.2] if args.quick else [float(s) for s in args.sizes.split(",") if s.strip()]
    if args.cache.resolve().is_relative_to(REPO):
        p.error("--cache must be outside the repository")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("peers: " + (peers.install_missing({"goaccess": "goaccess",
                                               "fail2ban-regex": "fail2ban"}) or "installed"))
    info = machine_info()
    bg_version = subprocess.run([botguard_exe(), "--version"], capture_output=True,
                                text=True).stdout.strip()
    versions = {"botguard": bg_version or "unknown", **peers.versions()}
    logs: dict[str, LogFile] = {}
    by_size: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="botguard-bench-run-") as tmp:
        work = Path(tmp)
        for millions in sorted(args.sizes):
            label = size_label(millions)
            print(f"== {label} lines", flush=True)
            logs[label] = ensure_log(millions, args.seed, args.cache, args.generator)
            by_size[label] = bench_size(logs[label], args, work)
        flat_rows: list[Row] = []
        flat_log: LogFile | None = None
        if "2M" in logs and not args.no_flat:
            flat_log = ensure_flat_log(logs["2M"], args.flat_days, args.seed, args.cache)
            if flat_log is not None:
                print(f"== same clients, {args.flat_days} days ({flat_log.lines:,} lines)",
                      flush=True)
                flat_rows = bench_flat(flat_log, args, work)
        format_rows: list[Row] = []
        if "2M" in logs and not args.no_formats:
            print(f"== cloud formats ({formats.FORMAT_LINES:,} lines of the 2M log)", flush=True)
            format_rows = bench_formats(logs["2M"], args, work)
        print("== start-up and incremental", flush=True)
        startup = bench_startup()
        incr_rows = [bench_incremental(ensure_log(0.2, args.seed, args.cache, args.generator), "0.2M", args, work)]
        if "2M" in logs:
            incr_rows.append(bench_incremental(logs["2M"], "2M", args, work))
            incr_rows.append(bench_incremental(logs["2M"], "2M", args, work, window="12h"))
        # Judged on the slowest 2M case (the steady state, with two windows).
        incr = max(incr_rows[1:] or incr_rows, key=lambda r: r.seconds if r.seconds is not None else float("inf"))
        export = bench_export(args.repeat)
        profile: list[tuple[str, float, float]] = []
        profile_label = ""
        if args.profile:
            small = [m for m in sorted(args.sizes) if m <= 2] or sorted(args.sizes)[:1]
            label = profile_label = size_label(small[-1])
            out = args.cache / f"profile-analyze-{label}.speedscope.json"
            print(f"== py-spy profile of analyze on {label} → {out}", flush=True)
            profile = profile_analyze(logs[label], work, out)
    info["load average at end"] = _loadavg()
    targets = evaluate(by_size, startup, incr, flat_rows)
    for label, rows in by_size.items():
        analyze = next(r for r in rows if r.tool == "botguard analyze").seconds
        print(f"\n{label} lines ({logs[label].lines:,}, {logs[label].size_bytes / 1e6:,.0f} MB)")
        print(plain(HEAD, table(rows, analyze)))
    print()
    print(plain([*HEAD[:-2], "note"], [[*r[:-2], r[-1]] for r in table([startup, *incr_rows], None)]))
    print(f"export: {_num(export[0], '.2f')} s ({export[1]})\n")
    print(plain(["target", "where", "measured", "verdict"],
                [[t.name, t.where, t.measured, t.verdict] for t in targets]))
    if profile:
        print("\nhot spots (charged, on stack):")
        for name, own, total in profile:
            print(f"  {own:6.1%} {total:6.1%}  {name}")
    if flat_rows and flat_log is not None:
        print(f"\nsame clients over {flat_log.lines:,} lines ({flat_log.generator})")
        print(plain(HEAD, table(flat_rows, None)))
    if format_rows:
        print("\ncloud formats")
        print(plain(HEAD, table(format_rows, None)))
    write_results(args.results, info, versions, logs, by_size, [startup, *incr_rows], export, targets,
                  args, profile, profile_label, flat=(flat_log, flat_rows), formats=format_rows)
    print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
