"""The rules file (``config/rules.yaml``): pydantic models and a loader whose errors name the
file, the line, the rule and the key."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from common.config_errors import Loc, format_errors, load_yaml
from common.durations import DurationMs
from common.messages import Severity
from common.topics import ID_PATTERN

_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?|true|false)\s*$")
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_NEGATION: Final = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}


class RulesError(ValueError):
    """The rules file is missing, unreadable or invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A comparison with a constant, written ``">= 90"`` in the rules file."""

    op: str
    value: float

    def holds(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def negated(self) -> Condition:
        return Condition(_NEGATION[self.op], self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def _condition(value: object) -> Condition:
    if isinstance(value, Condition):
        return value
    match = _CONDITION.fullmatch(str(value)) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a condition like '>= 90' or '< 60'")
    number = {"true": 1.0, "false": 0.0}.get(match.group(2))
    return Condition(match.group(1), float(match.group(2)) if number is None else number)


ConditionText = Annotated[Condition, BeforeValidator(_condition)]


def _clock(value: object) -> time:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(p) for p in value.split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'{value!r} is not a quoted "HH:MM" time')


Clock = Annotated[time, BeforeValidator(_clock)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Names = Annotated[tuple[str, ...] | None, BeforeValidator(_as_list)]


class Selector(BaseModel):
    """Which devices a rule looks at; every given key must match (each may list values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Names = None
    kind: Names = None
    device: Names = None
    zone: Names = None

    def matches(self, site: str, kind: str, device_id: str, zone: str | None) -> bool:
        return (
            (self.site is None or site in self.site)
            and (self.kind is None or kind in self.kind)
            and (self.device is None or device_id in self.device)
            and (self.zone is None or (zone is not None and zone in self.zone))
        )


class RuleSpec(BaseModel):
    """What every rule has: name, severity, ``for``, ``keep_firing_for``, ``repeat``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=ID_PATTERN)]
    severity: Severity = "warning"
    description: str = ""
    for_ms: DurationMs = Field(default=0, alias="for")
    keep_firing_for_ms: DurationMs = Field(default=0, alias="keep_firing_for")
    repeat_ms: DurationMs = Field(default=0, alias="repeat")
    select: Selector = Selector()
    dispatch: bool = Field(default=False, description="a firing alert asks for a collection")

    @model_validator(mode="after")
    def _not_active(self) -> RuleSpec:
        if self.name == "active":
            raise ValueError("'active' is a reserved topic level, choose another rule name")
        return self


class ThresholdSpec(RuleSpec):
    type: Literal["threshold"]
    field: str
    when: ConditionText
    clear: ConditionText | None = None


class AbsenceSpec(RuleSpec):
    type: Literal["absence"]
    after_ms: DurationMs = Field(alias="after", gt=0)
    offline_status: bool = True


class ForecastSpec(RuleSpec):
    type: Literal["forecast"]
    field: str = "fill_pct"
    full_at: float = 100.0
    within_ms: DurationMs = Field(alias="within", gt=0)
    clear_within_ms: DurationMs | None = Field(default=None, alias="clear_within")
    window_ms: DurationMs = Field(default=48 * 3_600_000, alias="window", gt=0)
    min_points: int = Field(default=4, ge=2)
    min_span_ms: DurationMs = Field(default=3_600_000, alias="min_span")
    reset_drop: float = Field(default=20.0, gt=0, description="a fall this big is a collection")


class RateSpec(RuleSpec):
    type: Literal["rate"]
    counter: str
    when: ConditionText
    clear: ConditionText | None = None
    window_ms: DurationMs = Field(default=15 * 60_000, alias="window", gt=0)
    require: dict[str, ConditionText] = Field(default_factory=dict)
    hours: tuple[Clock, Clock] | None = None


class DailyBalanceSpec(RuleSpec):
    type: Literal["daily_balance"]
    produced: str
    consumed: str
    when: ConditionText = Condition("<", 0.0)
    clear: ConditionText | None = None


class OccupancySpec(RuleSpec):
    type: Literal["occupancy"]
    capacity: int | None = Field(default=None, gt=0)
    over_pct: float = Field(default=100.0, gt=0)
    clear_pct: float = Field(default=90.0, gt=0)
    reset_at: Clock | None = None

    @model_validator(mode="after")
    def _hysteresis(self) -> OccupancySpec:
        if self.clear_pct > self.over_pct:
            raise ValueError("clear_pct must not be above over_pct")
        return self


AnyRuleSpec = Annotated[
    ThresholdSpec | AbsenceSpec | ForecastSpec | RateSpec | DailyBalanceSpec | OccupancySpec,
    Field(discriminator="type"),
]
RULE_TYPES: Final = ("threshold", "absence", "forecast", "rate", "daily_balance", "occupancy")


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[AnyRuleSpec]

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self


def _describe(data: Any) -> Callable[[Loc], str]:
    """Readable path of an error location, with the rule's name: ``rule 'bin_full' (for)``."""

    def describe(loc: Loc) -> str:
        node = data
        path: list[str] = []
        rule_name = ""
        for part in loc:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, Mapping) and isinstance(node.get("name"), str):
                    rule_name = node["name"]
            elif isinstance(part, str) and part in RULE_TYPES:
                continue  # the discriminator's branch, not a key of the file
            path.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        text = "".join(path).lstrip(".")
        return f"rule {rule_name!r} ({text})" if rule_name else text

    return describe


def parse_rules(text: str, source: str = "<rules>") -> RulesFile:
    """Validate rules YAML text; raise RulesError with ``source: line N: rule 'x' (...): why``."""
    document = load_yaml(text, source, RulesError)
    data = document.data
    if not isinstance(data, Mapping) or "rules" not in data:
        raise RulesError(f"{source}: expected a mapping with a 'rules' list at top level")
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        message = format_errors(source, exc, document, describe=_describe(data))
        raise RulesError(message) from None


def load_rules(path: str | Path) -> RulesFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc}") from None
    return parse_rules(text, str(path))
