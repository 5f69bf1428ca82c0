"""Stationary renewal processes: Poisson, constant-rate and gamma inter-arrival times."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field

from capsim.workload.base import DEFAULT_CHUNK, ArrivalProcess, renewal_chunks


class PoissonArrival(ArrivalProcess):
    """Memoryless arrivals at `rate_rps`: exponential gaps, the classic open-loop model of many users."""

    kind: Literal["poisson"] = "poisson"
    rate_rps: float = Field(gt=0, description="mean arrivals per second")

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        mean_gap_s = 1.0 / self.rate_rps
        yield from renewal_chunks(lambda n: rng.exponential(mean_gap_s, n), 0.0, duration_s, chunk)

    def mean_rate_rps(self, duration_s: float) -> float:
        return self.rate_rps


class ConstantArrival(ArrivalProcess):
    """Evenly spaced arrivals, one every 1/rate_rps seconds starting at `offset_s` (a paced client)."""

    kind: Literal["constant"] = "constant"
    rate_rps: float = Field(gt=0)
    offset_s: float = Field(default=0.0, ge=0)

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        gap_s = 1.0 / self.rate_rps
        # Multiplying the index avoids the drift that summing a rounded gap would accumulate.
        total = int(np.ceil(max(duration_s - self.offset_s, 0.0) * self.rate_rps))
        for first in range(0, total, chunk):
            times = self.offset_s + np.arange(first, min(first + chunk, total)) * gap_s
            times = times[times < duration_s]
            if times.size:
                yield times

    def mean_rate_rps(self, duration_s: float) -> float:
        return self.rate_rps


class GammaArrival(ArrivalProcess):
    """Gamma-distributed gaps with any coefficient of variation: cv > 1 is bursty, cv < 1 smooth,
    cv = 1 is Poisson."""

    kind: Literal["gamma"] = "gamma"
    rate_rps: float = Field(gt=0)
    cv: float = Field(gt=0, description="coefficient of variation of the inter-arrival time")

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        shape = 1.0 / (self.cv * self.cv)
        scale_s = (1.0 / self.rate_rps) / shape
        yield from renewal_chunks(lambda n: rng.gamma(shape, scale_s, n), 0.0, duration_s, chunk)

    def mean_rate_rps(self, duration_s: float) -> float:
        return self.rate_rps
