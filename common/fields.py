"""Strict field types shared by the contract's models: telemetry numbers and registry values.

Strict: JSON ``true`` or ``"12"`` is not a number and an id is a string; ints are accepted where
floats are.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_core import PydanticCustomError

from common.topics import ID_PATTERN

# -- telemetry values ----------------------------------------------------------------------
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0)]
Flag = Annotated[bool, Field(strict=True)]

# -- registry values -----------------------------------------------------------------------
Id = Annotated[str, Field(strict=True, pattern=ID_PATTERN)]
Latitude = Annotated[float, Field(strict=True, ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(strict=True, ge=-180.0, le=180.0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Text = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
ResidentialType = Literal["apartment", "row_house", "detached"]

REGISTRY_ERROR = "registry"
"""Error type of the registry's own rules: the message is complete, no ``(got ...)`` added."""


def registry_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(REGISTRY_ERROR, message)
