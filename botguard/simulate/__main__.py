"""``python -m botguard.simulate --out DIR [--seed N] [--hours H] [--clients N]``.

The same arguments as ``botguard simulate``, without the CLI's dependencies, so fixtures can be
regenerated from a bare checkout (see ``fixtures/shop/README.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botguard.simulate import simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m botguard.simulate",
                                     description="Write a simulated, labelled shop access log.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--clients", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        result = simulate(args.out, seed=args.seed, hours=args.hours, clients=args.clients)
    except ValueError as exc:
        parser.error(str(exc))
    kinds = ", ".join(f"{k}={v}" for k, v in result.clients_by_kind.items() if v)
    print(f"{result.lines} lines ({result.layout} layout) -> {result.log_path}\n{kinds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
