"""`make bench`: run every benchmark, print its figures and ratios, and save them as JSON.

Each benchmark module exposes ``run(repeats=...) -> dict`` that measures its own baseline in
the same run. ``python -m scripts.bench lineproto ingest`` runs a subset. The 30-minute soak is
run only when named: ``python -m scripts.bench soak --minutes 30 --seed 1`` (``make bench
BENCH=soak``); a benchmark whose figures say ``"passed": false`` makes the exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS = ("lineproto", "simulator_load", "ingest", "alerts", "bridge", "collection_query")
ON_REQUEST = ("soak",)  # too long for every `make bench`


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(BENCHMARKS + ON_REQUEST)}")
    parser.add_argument("--out", type=Path, default=Path("data/bench-results.json"))
    parser.add_argument("--minutes", type=float, default=30, help="soak: how long to publish")
    parser.add_argument("--seed", type=int, default=1, help="soak: seed of the faults and data")
    args = parser.parse_args(argv)
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} python {platform.python_version()}",
    }
    failed = []
    unknown = set(args.names) - set(BENCHMARKS + ON_REQUEST)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in args.names or BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"scripts.bench.{name}")
            if name == "soak":
                module.interrupt_on_signals()
                figures = module.run(minutes=args.minutes, seed=args.seed)
            else:
                figures = module.run()
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        results[name] = figures
        if isinstance(figures, dict) and figures.get("passed") is False:
            failed.append(name)
        print(json.dumps(figures, indent=2, default=str))
        print(f"({name} took {time.monotonic() - started:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
