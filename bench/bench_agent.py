"""Time ``agent_features`` on N distinct agents, the way a rotating scraper would bring them.

    .venv/bin/python bench/bench_agent.py [N ...]        (default: 1000 20000)

The agents: every instance in the installed crawler-user-agents list, then browser agents with
random platforms and versions (what fake-useragent style rotation produces), and some random
strings. "cold" starts from an empty parse cache in a fresh process (it includes loading and
compiling ua-parser's regexes); "warm" is a second call on the same agents.
"""

from __future__ import annotations

import random
import sys
import time

import polars as pl

from botguard.config import load_config
from botguard.features import agent

_PLATFORMS = (
    "Windows NT 10.0; Win64; x64",
    "Windows NT 6.1; WOW64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Linux x86_64",
    "Linux; Android 13; SM-S908B",
    "Linux; Android 10; K",
    "iPhone; CPU iPhone OS 17_1 like Mac OS X",
    "iPad; CPU OS 16_6 like Mac OS X",
)


def rotating_agents(n: int, seed: int = 7) -> list[str]:
    """n distinct agents: known crawlers first, then rotated browsers and garbage."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    rng = random.Random(seed)
    known = sorted({i for e in CRAWLER_USER_AGENTS_DATA for i in e["instances"]})
    out = dict.fromkeys(known[: n // 10])
    while len(out) < n:
        plat, kind, major = rng.choice(_PLATFORMS), rng.random(), rng.randint(40, 131)
        if kind < 0.5:
            mobile = " Mobile" if "Android" in plat else ""
            build = f"{rng.randint(1000, 6999)}.{rng.randint(0, 200)}"
            ua = (
                f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{major}.0.{build}{mobile} Safari/537.36"
            )
        elif kind < 0.75:
            ua = f"Mozilla/5.0 ({plat}; rv:{major}.0) Gecko/20100101 Firefox/{major}.0"
        elif kind < 0.9:
            ua = (
                f"Mozilla/5.0 ({plat}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{rng.randint(9, 17)}.{rng.randint(0, 6)} Mobile/15E148 Safari/604.1"
            )
        else:
            size = rng.randint(5, 60)
            ua = "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz/ ;()0123456789") for _ in range(size)
            )
        out[ua] = None
    agents = list(out)
    rng.shuffle(agents)
    return agents


def main(sizes: list[int]) -> None:
    cfg = load_config()
    for n in sizes:
        agents = pl.Series(rotating_agents(n))
        agent.clear_agent_cache()
        t0 = time.perf_counter()
        frame = agent.agent_features(agents, cfg)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        agent.agent_features(agents, cfg)
        warm = time.perf_counter() - t0
        rows = frame.height
        print(f"{n:>7,} distinct agents: cold {cold:6.2f} s   warm {warm:6.2f} s   rows {rows:,}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 20000])
