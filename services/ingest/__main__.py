"""MQTT telemetry -> validated points -> InfluxDB."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facility-ingest", description="MQTT telemetry -> validated points -> InfluxDB.")
    parser.parse_args(argv)
    print("facility-ingest: not yet built", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
