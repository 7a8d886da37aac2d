"""The tools botguard is compared with: how to install them, run them and name their version.

Each peer is a command over the same log file; ``bench/run.py`` times it exactly like the
botguard commands. A peer that is missing or cannot run is recorded as "n/a" with the reason,
so the benchmark never stops because of one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: fail2ban's shipped filter for bad user agents (it already carries the combined date pattern).
BADBOTS_FILTER = Path("/etc/fail2ban/filter.d/apache-badbots.conf")

#: Used when the shipped filter is absent: a user-agent filter in the same shape.
_CUSTOM_FILTER = r"""[Definition]
badagents = python-requests|python-urllib|Scrapy|curl/|Wget|Go-http-client|HeadlessChrome|okhttp
failregex = ^<HOST> -.*"(GET|POST|HEAD).*HTTP.*"(?:%(badagents)s)[^"]*"$
ignoreregex =
datepattern = ^[^\[]*\[({DATE})
              {^LN-BEG}
"""

#: The floor: read the file as space-separated CSV with Polars, nothing else.
_POLARS_READ = """
import sys
import polars as pl
frame = pl.read_csv(sys.argv[1], has_header=False, separator=" ", quote_char='"',
                    truncate_ragged_lines=True, infer_schema=False)
print(frame.height)
"""


@dataclass(frozen=True)
class Peer:
    """One runnable peer: its command, or why it cannot run."""

    name: str
    cmd: list[str] | None
    note: str = ""


def install_missing(packages: dict[str, str]) -> str:
    """apt-get install the packages whose executable is missing; return a note (empty if fine).

    ``packages`` maps an executable to the Debian package that provides it.
    """
    missing = sorted({pkg for exe, pkg in packages.items() if shutil.which(exe) is None})
    if not missing:
        return ""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"not installed ({', '.join(missing)}); apt-get unavailable or not root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True,
                       capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=True,
                       capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        return f"apt-get install {' '.join(missing)} failed: {' '.join(tail) or exc}"
    return ""


def goaccess(log: Path, work: Path) -> Peer:
    exe = shutil.which("goaccess")
    if exe is None:
        return Peer("goaccess", None, "goaccess not installed")
    # One JSON report, as a cron job would produce; no config file, no terminal UI.
    return Peer("goaccess", [exe, str(log), "--log-format=COMBINED", "--no-global-config",
                             "-o", str(work / "goaccess.json")])


def fail2ban(log: Path, work: Path) -> Peer:
    exe = shutil.which("fail2ban-regex")
    if exe is None:
        return Peer("fail2ban-regex", None, "fail2ban-regex not installed")
    if BADBOTS_FILTER.exists():
        return Peer("fail2ban-regex", [exe, str(log), str(BADBOTS_FILTER)],
                    "shipped apache-badbots filter")
    custom = work / "botguard-agents.conf"
    custom.write_text(_CUSTOM_FILTER)
    return Peer("fail2ban-regex", [exe, str(log), str(custom)], "custom user-agent filter")


def polars_read(log: Path) -> Peer:
    return Peer("polars read_csv", [sys.executable, "-c", _POLARS_READ, str(log)],
                "bare pl.read_csv, all columns as strings")


def versions() -> dict[str, str]:
    """First line of each peer's version output, or "not installed"."""
    probes = {
        "goaccess": ["goaccess", "--version"],
        "fail2ban-regex": ["fail2ban-regex", "--version"],
        "polars": [sys.executable, "-c", "import polars; print('polars', polars.__version__)"],
        "python": [sys.executable, "--version"],
    }
    found: dict[str, str] = {}
    for name, cmd in probes.items():
        if shutil.which(cmd[0]) is None:
            found[name] = "not installed"
            continue
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            found[name] = f"unknown ({exc})"
            continue
        lines = (out.stdout or out.stderr).strip().splitlines()
        found[name] = lines[0].strip() if lines else "unknown"
    return found
