"""The drift block of a stack (`kaizen:<target>.drift`), shared by every target, passed to the
runtime as environment variables:

    drift:
      falseAlarmDays: 30     # expected days between false alarms (KAIZEN_DRIFT_FALSE_ALARM_DAYS)
      windowSeconds: 3600    # a window closes after this long ... (KAIZEN_DRIFT_WINDOW_SECONDS)
      windowRows: 5000       # ... or this many rows, whichever first (KAIZEN_DRIFT_WINDOW_ROWS)
      minRows: 100           # fewer rows are not judged: the window stays open (KAIZEN_DRIFT_MIN_ROWS)
      enabled: true          # KAIZEN_DRIFT=off when false

The runtime calibrates its alarm to this false-alarm rate and exports `kaizen_drift_alarm` (0/1);
each target alarms on it (or on the `drift_alarm` field of its `drift` log line). The old fixed
threshold `alerts.driftScore` is refused with a message naming this block.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from model_packages.serving import contract as c

DRIFT_SCORE_REMOVED = (
    "driftScore was removed: drift no longer alarms on a fixed PSI but on a calibrated test; set "
    "drift.falseAlarmDays (expected days between false alarms, default 30) instead, e.g. "
    "`kaizen:<target>: {drift: {falseAlarmDays: 30}}`"
)


def refuse_drift_score(data: Any) -> Any:
    """For an alerts model's `mode="before"` validator: a clear error for the removed key."""
    if isinstance(data, dict) and ({"driftScore", "drift_score"} & set(data)):
        raise ValueError(DRIFT_SCORE_REMOVED)
    return data


class DriftSettings(BaseModel):
    """How often a false drift alarm may come, and the windows the runtime judges."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    enabled: bool = True
    false_alarm_days: float = Field(default=30.0, ge=0.01, le=36_500)
    window_seconds: float = Field(default=3600.0, ge=1, le=7 * 86_400)
    window_rows: int = Field(default=5000, ge=10, le=100_000)
    min_rows: int = Field(default=100, ge=1, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> DriftSettings:
        if self.min_rows > self.window_rows:
            raise ValueError(f"minRows ({self.min_rows}) is larger than windowRows ({self.window_rows})")
        if self.window_seconds > 0.5 * self.false_alarm_days * 86_400:
            raise ValueError(f"falseAlarmDays ({self.false_alarm_days:g}) is too short for windowSeconds "
                             f"({self.window_seconds:g}): at most one false alarm per two windows")
        return self

    def as_env(self) -> dict[str, str]:
        """The runtime's environment variables (model_packages/serving/settings.py)."""
        return {
            c.ENV_DRIFT: "on" if self.enabled else "off",
            c.ENV_DRIFT_FALSE_ALARM_DAYS: f"{self.false_alarm_days:g}",
            c.ENV_DRIFT_WINDOW_SECONDS: f"{self.window_seconds:g}",
            c.ENV_DRIFT_WINDOW_ROWS: str(self.window_rows),
            c.ENV_DRIFT_MIN_ROWS: str(self.min_rows),
        }
