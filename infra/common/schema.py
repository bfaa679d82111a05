"""The base of every target's stack config models, and the alert thresholds they share.

Below `config.py` (every target's settings) and `local_config.py` (the `local` target's), so both
import it and neither imports the other's target.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from ..drift_config import refuse_drift_score

# camelCase keys (snake_case accepted too), unknown keys refused, immutable.
MODEL_CONFIG = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ConfigModel(BaseModel):
    """A stack config model (`MODEL_CONFIG`)."""

    model_config = MODEL_CONFIG


class AlertThresholds(ConfigModel):
    """Thresholds that mean the same on every target: p99 latency and 5xx answers per 5 minutes."""

    latency_p99_ms: Annotated[float, Field(gt=0)] = 1000.0
    errors_5xx_per_5min: Annotated[int, Field(ge=1, alias="errors5xxPer5min")] = 5

    @model_validator(mode="before")
    @classmethod
    def _no_drift_score(cls, data: Any) -> Any:  # the fixed PSI threshold became drift.falseAlarmDays
        return refuse_drift_score(data)
