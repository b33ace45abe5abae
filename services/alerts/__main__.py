"""Rules on the telemetry stream -> alerts, notifications, truck dispatch."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facility-alerts",
        description="Rules on the telemetry stream -> alerts, notifications, truck dispatch.",
    )
    parser.parse_args(argv)
    print("facility-alerts: not yet built", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
