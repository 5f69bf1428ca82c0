"""A service-time model slowed by a constant factor: a replica on a MIG slice (capsim.hardware.mig)
takes `service_scale` times as long per batch as the whole GPU the scenario's service time describes.

Every form the compiled data plane knows is linear in its scale (a batch's time is
`scale_s[k] × f(draw)`, plus `size_s × items` with request sizes, or a quantile curve), so the scaled
model multiplies those arrays and stays exactly the base model's sample path times the factor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ConfigDict, Field

from capsim.servicetime.base import BatchSampler, BatchTimeTable, ServiceTimeModel

if TYPE_CHECKING:
    from capsim.scenario.schema import Hardware

# The BatchTimeTable arrays that carry seconds (a table without request sizes lacks `size_s`).
_SECONDS_FIELDS = ("scale_s", "quantiles_s", "size_s")


class ScaledService(ServiceTimeModel):
    """`base` with every batch's service time multiplied by `factor` (built by the engine, never
    written in a scenario)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    base: ServiceTimeModel
    factor: float = Field(gt=0)

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        """The base model's mean × factor."""
        inner = self.base.mean_s(batch_size) if items is None else self.base.mean_s(batch_size, items)
        return self.factor * inner

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        """The base model's draws (same stream, same order) × factor."""
        draw = self.base.sampler(rng)
        factor = self.factor
        return lambda *args: factor * draw(*args)

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable | None:
        """The base model's compiled form with its seconds scaled by factor."""
        table = self.base.batch_time_table(max_batch_size)
        if table is None:
            return None
        scaled: dict[str, Any] = {
            name: getattr(table, name) * self.factor for name in _SECONDS_FIELDS if hasattr(table, name)
        }
        return dataclasses.replace(table, **scaled)

    def resolve_paths(self, base_dir: Path) -> ServiceTimeModel:
        """The base model's paths resolved, still scaled."""
        return self.model_copy(update={"base": self.base.resolve_paths(base_dir)})

    def describe(self) -> dict[str, object]:
        """The base model's description with the factor applied."""
        return {**self.base.describe(), "service_scale": self.factor}


def service_on_hardware(service: ServiceTimeModel, hardware: Hardware) -> ServiceTimeModel:
    """The service time a replica sees on the scenario's hardware: on a MIG slice the scenario's
    (whole-GPU) service time × `hardware.mig.service_scale` (capsim.hardware.mig), else unchanged."""
    mig = hardware.mig
    if mig is None or mig.service_scale is None or mig.service_scale == 1.0:
        return service
    return ScaledService(base=service, factor=mig.service_scale)
