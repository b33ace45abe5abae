"""`make bench`: run every benchmark, print its figures and ratios, and save them as JSON.

Each benchmark module exposes ``run(repeats=...) -> dict`` that measures its own baseline in
the same run. ``python -m scripts.bench lineproto ingest`` runs a subset.
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

BENCHMARKS = ("lineproto", "simulator_load", "ingest", "alerts", "bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=Path("data/bench-results.json"))
    args = parser.parse_args(argv)
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} python {platform.python_version()}",
    }
    failed = []
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in args.names or BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"scripts.bench.{name}")
            figures = module.run()
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        results[name] = figures
        print(json.dumps(figures, indent=2, default=str))
        print(f"({name} took {time.monotonic() - started:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
