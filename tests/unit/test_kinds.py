"""The device-kind registry (common.kinds): every declared kind is complete wherever a kind
must appear — payload model, measurement, interval, registry parameters, simulator model,
scenario files and dashboards — so adding a kind cannot leave one of them behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.devices import Device, Registry, load_registry
from common.kinds import KINDS, KindParams, Telemetry
from common.payloads import OUT_OF_RANGE, STATUS_MEASUREMENT, Reading, Rejection, parse_message
from common.schema import ALERT_MEASUREMENT, DISPATCH_MEASUREMENT
from common.topics import Topics, check_id
from devices.simulator.models import MODEL_KINDS, KindModel
from devices.simulator.scenario import Scenario
from grafana.boards.pipeline import READINGS
from grafana.build import build_all
from tests.unit.simulator.support import run_engine

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "devices.yaml"
NAMES = list(KINDS)
TOPICS = Topics("facility")
START = datetime(2025, 6, 13, 12, 0, tzinfo=UTC)  # a Friday noon in Seoul's summer


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(SHIPPED)


@pytest.fixture(scope="module")
def dashboards(registry: Registry) -> dict[str, str]:
    return build_all(registry)


@pytest.mark.parametrize("name", NAMES)
def test_kind_has_a_payload_model_a_measurement_an_interval_and_parameters(name: str) -> None:
    kind = KINDS[name]
    assert kind.name == name
    assert issubclass(kind.telemetry, Telemetry) and kind.telemetry is not Telemetry
    assert kind.telemetry.value_fields, "a kind sends at least one value field"
    assert kind.count_field in kind.telemetry.value_fields
    assert check_id(kind.measurement, "measurement")
    assert 1 <= kind.default_interval_s <= 86_400
    assert issubclass(kind.params, KindParams)


def test_each_kind_has_its_own_measurement() -> None:
    measurements = [kind.measurement for kind in KINDS.values()]
    assert len(set(measurements)) == len(measurements)
    assert not {STATUS_MEASUREMENT, ALERT_MEASUREMENT, DISPATCH_MEASUREMENT} & set(measurements)


@pytest.mark.parametrize("name", NAMES)
def test_kind_is_judged_by_its_own_model(name: str, registry: Registry) -> None:
    device = registry.devices_of_kind(name)[0]
    topic = TOPICS.telemetry(device.site, name, device.id)
    result = parse_message(topic, b"{}", TOPICS)
    assert isinstance(result, Rejection) and result.code != "unknown_kind"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_registry_has_a_device_of_every_kind_with_its_default_interval(
    name: str,
) -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    entry: dict[str, Any] = next(d for d in data["devices"] if d["kind"] == name)
    entry.pop("interval_s", None)
    device = Device.model_validate(entry)
    assert device.interval_s == KINDS[name].default_interval_s
    assert isinstance(device.params, KINDS[name].params)


@pytest.mark.parametrize("name", NAMES)
def test_kind_has_a_simulator_model_whose_readings_the_contract_accepts(name: str) -> None:
    kind = KINDS[name]
    model = MODEL_KINDS[name]
    assert isinstance(model, KindModel)
    assert model.fault_field in kind.telemetry.value_fields
    assert model.out_of_range[0] in kind.telemetry.value_fields

    scenario = Scenario(name="kind-check", start=START, duration_s=2 * 3600, kinds=(name,))
    _, out = run_engine(scenario)
    sent = out.telemetry()
    assert sent
    end_ms = int(START.timestamp() * 1000) + 2 * 3600 * 1000
    for message in sent:
        result = parse_message(message.topic, message.payload, TOPICS, now_ms=end_ms)
        assert isinstance(result, Reading), result
        assert result.kind == name and result.measurement == kind.measurement
        assert kind.count_field in result.fields  # what the pipeline board counts

    # The simulator's out_of_range fault is out of the contract's range for this kind.
    field, value = model.out_of_range
    body = {**json.loads(sent[0].payload), field: value}
    broken = parse_message(sent[0].topic, json.dumps(body).encode(), TOPICS, now_ms=end_ms)
    assert isinstance(broken, Rejection) and broken.code == OUT_OF_RANGE


def test_scenarios_accept_every_kind() -> None:
    scenario = Scenario.model_validate(
        {"name": "all", "kinds": NAMES, "synthetic": {name: 1 for name in reversed(NAMES)}}
    )
    assert scenario.kinds == tuple(NAMES)
    assert list(scenario.synthetic.model_dump()) == NAMES  # clones made in declaration order


@pytest.mark.parametrize("name", NAMES)
def test_kind_has_a_dashboard_panel_and_a_pipeline_row(
    name: str, dashboards: dict[str, str]
) -> None:
    kind = KINDS[name]
    assert READINGS[kind.measurement] == kind.count_field
    query = f'FROM \\"{kind.measurement}\\"'  # as it appears in the JSON text
    assert query in dashboards["pipeline-health.json"]
    own = [file for file, text in dashboards.items() if file != "pipeline-health.json"]
    assert any(query in dashboards[file] for file in own), f"no dashboard shows {name}"
