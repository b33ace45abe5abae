"""Simulated facility devices and collection trucks publishing over MQTT."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facility-simulator", description="Simulated facility devices and collection trucks publishing over MQTT.")
    parser.parse_args(argv)
    print("facility-simulator: not yet built", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
