"""Dashboards as code; push/verify them on a Grafana server."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facility-grafana", description="Dashboards as code; push/verify them on a Grafana server.")
    parser.parse_args(argv)
    print("facility-grafana: not yet built", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
