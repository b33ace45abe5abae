"""The one config-error formatter: file, line (from the YAML nodes) and entry, for every
config file; the same problems and '... and N more' cut for settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from common.config_errors import format_errors, load_yaml
from common.devices import RegistryError, load_registry
from devices.simulator.scenario import ScenarioError, load_scenario
from services.alerts.config import RulesError, parse_rules

REPO = Path(__file__).resolve().parents[2]


class ConfigProblem(Exception):
    pass


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    size: int


class File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item]


def _message(text: str) -> str:
    document = load_yaml(text, "f.yaml", ConfigProblem)
    with pytest.raises(ValidationError) as info:
        File.model_validate(document.data)
    return format_errors("f.yaml", info.value, document)


def test_names_file_line_path_and_the_value_written() -> None:
    text = "items:\n  - id: a\n    size: 1\n  - id: b\n    size: big\n"
    assert _message(text) == (
        "f.yaml: line 5: items[1].size: Input should be a valid integer, unable to parse "
        "string as an integer (got 'big')"
    )


def test_a_missing_key_points_at_its_entry_and_merged_keys_at_where_they_are_written() -> None:
    text = "x: &base {size: oops}\nitems:\n  - id: a\n    size: 1\n  - <<: *base\n    id: b\n"
    message = _message(text)
    assert message.startswith("f.yaml: line 1: items[1].size: ")  # the anchor's line
    missing = _message("items:\n  - id: a\n    size: 1\n  - id: b\n")
    assert missing == "f.yaml: line 4: items[1].size: Field required"


def test_more_than_five_problems_are_counted_not_listed() -> None:
    text = "items:\n" + "".join(f"  - {{id: i{n}, size: x}}\n" for n in range(8))
    message = _message(text)
    assert message.count("Input should be") == 5 and message.endswith("; ... and 3 more")


def test_bad_yaml_names_line_and_column() -> None:
    with pytest.raises(ConfigProblem, match=r"^f\.yaml: invalid YAML at line 2, column 1: "):
        load_yaml("items: [\n", "f.yaml", ConfigProblem)


def test_every_config_file_gets_line_numbers(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"^bad\.yaml: line 4: rule 'gone' \(rules\[0\]\.after"):
        parse_rules("rules:\n  - name: gone\n    type: absence\n    after: soon\n", "bad.yaml")

    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\nevents:\n  - {type: group_visit, at: 1h, sizee: 3}\n")
    with pytest.raises(ScenarioError, match=r"line 3: events\.0\.sizee: unknown key"):
        load_scenario(str(scenario))

    registry = tmp_path / "devices.yaml"
    text = (REPO / "config/devices.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if line.strip().startswith("- id: uac-gate-main"))
    lines.insert(n + 1, "    bogus: 1")
    registry.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(registry)
    assert f"line {n + 2}: devices[" in str(info.value)
    assert "bogus" in str(info.value) and "(device 'uac-gate-main')" in str(info.value)
