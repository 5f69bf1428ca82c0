"""Time-of-day minimum replicas: pre-warm before a known peak, combinable with any policy."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from capsim.input_model import InputModel


class ScheduleWindow(InputModel):
    """From `start_h` to `end_h` (hours of the day; may wrap past midnight) keep at least
    `min_replicas`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_h: float = Field(ge=0, lt=24)
    end_h: float = Field(ge=0, le=24)
    min_replicas: int = Field(ge=0)

    def covers(self, hour: float) -> bool:
        """Whether the hour of the day falls inside the window."""
        if self.start_h <= self.end_h:
            return self.start_h <= hour < self.end_h
        return hour >= self.start_h or hour < self.end_h


def schedule_floor(windows: list[ScheduleWindow], now_s: float, start_time_h: float, day_s: float = 86_400.0) -> int:
    """The largest `min_replicas` of the windows covering the clock time at simulated `now_s`."""
    hour = (start_time_h + now_s / day_s * 24.0) % 24.0
    return max((w.min_replicas for w in windows if w.covers(hour)), default=0)
