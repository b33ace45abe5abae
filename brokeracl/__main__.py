"""facility-acl: write (or ``--check``) deploy/mosquitto/acl from config/devices.yaml and the
bridge's sources file (BRIDGE_SOURCES_FILE, default config/sources.yaml)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from brokeracl import local_source_filters, render_acl
from common.devices import DEFAULT_DEVICES_FILE, RegistryError, load_registry

DEFAULT_SERVICES = Path("deploy/mosquitto/acl-services")
DEFAULT_OUTPUT = Path("deploy/mosquitto/acl")
DEFAULT_SOURCES = Path("config/sources.yaml")  # the bridge's BRIDGE_SOURCES_FILE default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facility-acl", description=__doc__)
    parser.add_argument("--devices", type=Path, default=DEFAULT_DEVICES_FILE)
    parser.add_argument("--services", type=Path, default=DEFAULT_SERVICES)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--sources",
        type=Path,
        default=Path(os.environ.get("BRIDGE_SOURCES_FILE") or DEFAULT_SOURCES),
        help="the bridge's sources file (default: $BRIDGE_SOURCES_FILE or config/sources.yaml)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the output file is not up to date"
    )
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.devices)
        services = args.services.read_text(encoding="utf-8")
    except (RegistryError, OSError) as exc:
        print(f"facility-acl: {exc}", file=sys.stderr)
        return 2
    # A bad sources file costs only the bridge's reads, never the devices' and services' ACL.
    reads, problems = local_source_filters(args.sources)
    for problem in problems:
        print(f"facility-acl: warning: {problem}", file=sys.stderr)
    text = render_acl(registry, services, reads)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"facility-acl: {args.output} is out of date; run `make acl`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"facility-acl: wrote {args.output} ({len(registry.devices)} devices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
