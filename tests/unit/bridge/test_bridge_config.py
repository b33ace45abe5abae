"""config/sources.yaml: the shipped file loads; errors name the file, the line and the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.bridge.config import SourcesError, compile_path, load_sources

ROOT = Path(__file__).resolve().parents[3]

GOOD = """sources:
  - name: ttn-bins
    subscribe: v3/+/devices/+/up
    preset: ttn_v3
    kind: ewaste_bin
    fields:
      fill_pct: {path: distance, unit: mm, derive: fill_from_distance}
"""


def load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(SourcesError) as caught:
        load_sources(path)
    return str(caught.value)


def test_shipped_sources_file_loads() -> None:
    sources = load_sources(ROOT / "config" / "sources.yaml")
    assert {s.preset for s in sources.sources} >= {"ttn_v3", "chirpstack_v4", "shelly_gen2"}


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD)
    assert load_sources(path).sources[0].name == "ttn-bins"


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("unit: mm, derive", "unit: furlong, derive", 7, "unknown unit 'furlong'"),
        (
            "{path: distance, unit: mm, derive: fill_from_distance}",
            "{path: x, unit: kWh}",
            6,
            "measures energy, fill_pct measures percent",
        ),
        ("fill_pct:", "weight_lbs:", 6, "not a ewaste_bin field"),
        ("preset: ttn_v3", "preset: lorawan", 4, "preset"),
        ("v3/+/devices/+/up", "v3/#/up", 3, "not a valid MQTT topic filter"),
        ("{path: distance,", '{path: [distance, "a[x"],', 7, "is not a path like a.b[0].c"),
    ],
)
def test_errors_name_the_line_and_the_source(
    tmp_path: Path, old: str, new: str, line: int, says: str
) -> None:
    message = load(tmp_path, GOOD.replace(old, new))
    assert message.startswith(f"{tmp_path / 'sources.yaml'}: ")
    assert f": line {line}: " in message, message
    assert says in message
    assert "(source 'ttn-bins')" in message


def test_derive_needs_a_length_unit_and_a_bin(tmp_path: Path) -> None:
    message = load(tmp_path, GOOD.replace("unit: mm", "unit: pct"))
    assert "fill_from_distance needs a length unit" in message


def test_generic_source_needs_a_device(tmp_path: Path) -> None:
    message = load(tmp_path, GOOD.replace("preset: ttn_v3", "preset: generic"))
    assert "a generic source needs device" in message


def test_duplicate_names_and_a_password_in_the_url(tmp_path: Path) -> None:
    twice = GOOD + GOOD.split("sources:\n", 1)[1]
    assert "duplicate source name 'ttn-bins'" in load(tmp_path, twice)
    leaked = GOOD.replace(
        "    subscribe:", "    broker: {url: 'mqtts://app:NNSXS.KEY@host:8883'}\n    subscribe:"
    )
    message = load(tmp_path, leaked)
    assert (
        "line 3: sources[0].broker.url: put no password in the URL; use password_secret" in message
    )
    assert "NNSXS" not in message  # the password is masked even in the error


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    assert "invalid YAML at line 4" in load(tmp_path, "sources:\n  - name: a\n    fields: {x: [\n")


def test_paths_compile() -> None:
    assert compile_path("a.b[0].c") == (False, ("a", "b", 0, "c"))
    assert compile_path("$.rxInfo[0].gwTime") == (True, ("rxInfo", 0, "gwTime"))
    assert compile_path("switch:0.aenergy.by_minute[2]") == (
        False,
        ("switch:0", "aenergy", "by_minute", 2),
    )
    with pytest.raises(ValueError):
        compile_path("a..b[x]")
