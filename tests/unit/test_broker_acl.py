"""facility-acl: the broker ACL generated from the device registry (issue 11, point 3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brokeracl import local_source_filters, render_acl
from brokeracl.__main__ import main
from common.devices import load_registry

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
DEVICES = REPO / "config" / "devices.yaml"


def test_the_shipped_acl_is_generated_from_the_shipped_registry() -> None:
    """Adding a device to config/devices.yaml without `make acl` fails here."""
    args = ["--devices", str(DEVICES), "--services", str(DEPLOY / "acl-services")]
    assert main([*args, "--output", str(DEPLOY / "acl"), "--check"]) == 0


def test_each_device_gets_exactly_its_own_two_topics_and_no_pattern() -> None:
    registry = load_registry(DEVICES)
    acl = render_acl(registry, "user svc.ingest\ntopic read facility/+/+/+/telemetry\n")
    assert not re.search(r"(?m)^pattern ", acl)
    for device in registry.devices:
        block = acl.split(f"\nuser {device.id}\n", 1)[1].split("\n\n", 1)[0].splitlines()
        own = f"facility/{device.site}/{device.kind}/{device.id}"
        assert block == [
            f"topic write {own}/telemetry",
            f"topic write {own}/status",
            f"topic read {own}/status",
        ]
    # The services' section is copied verbatim, ahead of the devices.
    assert acl.index("user svc.ingest") < acl.index(f"user {registry.devices[0].id}")
    # No wildcard is ever granted to a device.
    device_part = acl.split("# --- devices", 1)[1]
    assert "+" not in device_part and "#" not in device_part.split("\n", 3)[3]


def test_check_reports_a_stale_acl_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "acl"
    output.write_text("user bin-001\npattern write facility/+/+/%u/telemetry\n")
    args = ["--devices", str(DEVICES), "--services", str(DEPLOY / "acl-services")]
    assert main([*args, "--output", str(output), "--check"]) == 1
    assert "make acl" in capsys.readouterr().err
    assert main([*args, "--output", str(output)]) == 0
    assert main([*args, "--output", str(output), "--check"]) == 0


def test_an_invalid_registry_is_reported_not_written(tmp_path: Path) -> None:
    bad = tmp_path / "devices.yaml"
    bad.write_text("sites: []\n")
    output = tmp_path / "acl"
    assert main(["--devices", str(bad), "--output", str(output)]) == 2
    assert not output.exists()


def test_the_bridge_may_write_registered_devices_telemetry_and_its_dead_letters_only() -> None:
    registry = load_registry(DEVICES)
    acl = (DEPLOY / "acl").read_text()
    block = acl.split("\nuser svc.bridge\n", 1)[1].split("\n\n", 1)[0].splitlines()
    telemetry = {
        f"topic write facility/{d.site}/{d.kind}/{d.id}/telemetry" for d in registry.devices
    }
    writes = [line for line in block if not line.startswith("topic read ")]
    assert set(writes) == {"topic write facility/deadletter/bridge", *telemetry}
    assert len(writes) == len(registry.devices) + 1
    # Its reads: the subscriptions of the shipped sources on our broker, nothing else.
    reads, problems = local_source_filters(REPO / "config" / "sources.yaml")
    assert problems == [] and reads
    assert block[len(writes) :] == [f"topic read {f}" for f in reads]
    # Literal topics to write: a wildcard would reach five-level service topics.
    assert not any("+" in line or "#" in line for line in writes)
    assert acl.count("\nuser svc.bridge\n") == 1


def test_the_bridge_reads_the_filters_of_sources_on_our_broker_only(tmp_path: Path) -> None:
    """svc.bridge subscribes to local sources (no `broker:`) through its one link to our
    broker: the ACL grants it `topic read` on exactly their filters."""
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n"
        "  - name: remote\n    broker: {url: 'mqtts://ns.example:8883'}\n"
        "    subscribe: v3/+/devices/+/#\n"
        "  - name: shelly\n    subscribe: [+/events/rpc, +/status/+]\n"
        "  - name: broken\n    subscribe: ['bad filter\\ntopic readwrite #']\n"
        "  - name: chirp\n    subscribe: application/+/device/+/event/+\n"
    )
    reads, problems = local_source_filters(sources)
    assert reads == ["+/events/rpc", "+/status/+", "application/+/device/+/event/+"]
    assert len(problems) == 1 and "broken" in problems[0]
    acl = render_acl(load_registry(DEVICES), "", reads)
    block = acl.split("\nuser svc.bridge\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line for line in block if line.startswith("topic read")] == [
        "topic read +/events/rpc",
        "topic read +/status/+",
        "topic read application/+/device/+/event/+",
    ]
    assert "readwrite" not in acl


def test_a_missing_sources_file_grants_no_reads_and_still_writes_the_acl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "acl"
    args = ["--devices", str(DEVICES), "--services", str(DEPLOY / "acl-services")]
    assert main([*args, "--sources", str(tmp_path / "absent.yaml"), "--output", str(output)]) == 0
    assert "absent.yaml: not read" in capsys.readouterr().err
    acl = output.read_text()
    block = acl.split("\nuser svc.bridge\n", 1)[1].split("\n\n", 1)[0]
    assert "topic read" not in block and "\nuser bin-001\n" in acl
