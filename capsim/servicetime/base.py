"""What a service-time model provides: how long one batch of k requests takes on one executor."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

BatchSampler = Callable[[int], float]
"""Draws the service time in seconds of one batch of the given size."""


class ServiceTimeModel(BaseModel):
    """Base of service-time specs: each subclass is both the scenario schema and the sampler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def mean_s(self, batch_size: int) -> float:
        """Expected service time in seconds of a batch of `batch_size` requests."""

    @abstractmethod
    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        """A function drawing batch service times from `rng` (buffered: draws come in numpy chunks)."""

    def resolve_paths(self, base_dir: Path) -> ServiceTimeModel:
        """A copy whose relative file paths are taken relative to `base_dir`."""
        return self

    def describe(self) -> dict[str, object]:
        """What the summary shows about the model (profiles add their provenance)."""
        return {"kind": getattr(self, "kind", type(self).__name__)}


def lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and coefficient of variation."""
    sigma2 = np.log1p(cv * cv)
    return float(np.log(mean) - 0.5 * sigma2), float(np.sqrt(sigma2))
