"""Duration distributions for slow, rare events (cold-start phases, spot notices): small pydantic
specs chosen by `kind`, sampled exactly."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel


class _Duration(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample_s(self, rng: np.random.Generator) -> float:  # pragma: no cover - overridden
        """One duration in seconds."""
        raise NotImplementedError

    def mean_s(self) -> float:  # pragma: no cover - overridden
        """The expected duration in seconds."""
        raise NotImplementedError

    def sample_array_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n durations in seconds at once: the same values n calls of `sample_s` would draw."""
        return np.array([self.sample_s(rng) for _ in range(n)], dtype=float)


class FixedDuration(_Duration):
    """Always `value_s`."""

    kind: Literal["fixed"] = "fixed"
    value_s: float = Field(ge=0)

    def sample_s(self, rng: np.random.Generator) -> float:
        return self.value_s

    def mean_s(self) -> float:
        return self.value_s

    def sample_array_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value_s)


class UniformDuration(_Duration):
    """Uniform on [low_s, high_s]."""

    kind: Literal["uniform"] = "uniform"
    low_s: float = Field(ge=0)
    high_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformDuration:
        if self.high_s < self.low_s:
            raise ValueError("high_s must be >= low_s")
        return self

    def sample_s(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low_s, self.high_s))

    def sample_array_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low_s, self.high_s, size=n)

    def mean_s(self) -> float:
        return 0.5 * (self.low_s + self.high_s)


class LognormalDuration(_Duration):
    """Lognormal with mean `mean_s` and coefficient of variation `cv` (a floor and a long tail, the
    shape of measured node launches and image pulls)."""

    kind: Literal["lognormal"] = "lognormal"
    mean_s_: float = Field(alias="mean_s", gt=0)
    cv: float = Field(gt=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def _mu_sigma(self) -> tuple[float, float]:
        sigma2 = math.log1p(self.cv * self.cv)
        return math.log(self.mean_s_) - 0.5 * sigma2, math.sqrt(sigma2)

    def sample_s(self, rng: np.random.Generator) -> float:
        return float(rng.lognormal(*self._mu_sigma()))

    def sample_array_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(*self._mu_sigma(), size=n)

    def mean_s(self) -> float:
        return self.mean_s_


DurationSpec = Annotated[FixedDuration | UniformDuration | LognormalDuration, Field(discriminator="kind")]


def fixed(value_s: float) -> FixedDuration:
    """A fixed duration (for defaults)."""
    return FixedDuration(value_s=value_s)
