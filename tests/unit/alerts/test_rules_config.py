"""The rules file: the shipped default is valid; mistakes are reported with line, rule and key."""

from __future__ import annotations

import pytest

from services.alerts.config import RulesError, load_rules, parse_rules
from tests.unit.alerts.helpers import ROOT


def test_default_rules_file_is_valid_and_covers_the_brief() -> None:
    names = {rule.name for rule in load_rules(ROOT / "config" / "rules.yaml").rules}
    assert {
        "bin_full",
        "bin_predicted_full",
        "bin_fire_risk",
        "bin_low_battery",
        "device_offline",
        "occupancy_over_capacity",
        "net_zero_missed",
        "grid_import_while_pv",
    } <= names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - name: hot\n    type: threshold\n    field: t\n    when: '>> 3'\n",
            "line 5: rule 'hot' (rules[0].when): '>> 3' is not a condition",
        ),
        (
            "rules:\n  - name: full\n    type: threshold\n    field: f\n    when: '> 1'\n"
            "    for: soon\n",
            "line 6: rule 'full' (rules[0].for): 'soon' is not a duration",
        ),
        ("rules:\n  - name: q\n    type: nope\n", "line 2: rule 'q' (rules[0]): Input tag 'nope'"),
        (
            "rules:\n  - name: gone\n    type: absence\n    afterr: 3m\n",
            "line 4: rule 'gone' (rules[0].afterr): Extra inputs are not permitted",
        ),
        ("rules: [\n", "invalid YAML"),
        ("- a\n", "expected a mapping with a 'rules' list"),
        (
            "rules:\n  - {name: a, type: absence, after: 1m}\n  - {name: a, type: absence, "
            "after: 2m}\n",
            "duplicate rule name 'a'",
        ),
    ],
)
def test_bad_rules_file_error_names_line_rule_and_key(text: str, expected: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "bad.yaml")
    assert str(info.value).startswith("bad.yaml:")
    assert expected in str(info.value)


def test_missing_rules_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules("/nonexistent/rules.yaml")
