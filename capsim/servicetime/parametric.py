"""Closed-form service-time models: deterministic, exponential, lognormal, and linear in batch size."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from capsim.rng import buffered
from capsim.servicetime.base import (
    FORM_EXPONENTIAL,
    FORM_LOGNORMAL,
    FORM_TABLE,
    BatchSampler,
    BatchTimeTable,
    ServiceTimeModel,
    lognormal_params,
)


def _mean_table(model: ServiceTimeModel, max_batch_size: int) -> BatchTimeTable:
    return BatchTimeTable(FORM_TABLE, None, np.array([model.mean_s(k) for k in range(max_batch_size + 1)]))


class DeterministicService(ServiceTimeModel):
    """Every batch takes exactly `mean_ms` (whatever its size), plus `per_item_ms` per request."""

    kind: Literal["deterministic"] = "deterministic"
    mean_ms: float = Field(gt=0)
    per_item_ms: float = Field(default=0.0, ge=0)

    def mean_s(self, batch_size: int) -> float:
        return (self.mean_ms + self.per_item_ms * (batch_size - 1)) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        return self.mean_s

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        return _mean_table(self, max_batch_size)


class ExponentialService(ServiceTimeModel):
    """Exponential batch times with mean `mean_ms`: the memoryless M/M/c reference model."""

    kind: Literal["exponential"] = "exponential"
    mean_ms: float = Field(gt=0)

    def mean_s(self, batch_size: int) -> float:
        return self.mean_ms / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        draws = buffered(rng.standard_exponential)
        mean_s = self.mean_ms / 1000.0
        return lambda batch_size: mean_s * next(draws)

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        scale_s = np.full(max_batch_size + 1, self.mean_ms / 1000.0)
        return BatchTimeTable(FORM_EXPONENTIAL, "standard_exponential", scale_s)


class LognormalService(ServiceTimeModel):
    """Lognormal batch times with mean `mean_ms` and coefficient of variation `cv`: the usual shape
    of measured inference latency (a floor and a right tail)."""

    kind: Literal["lognormal"] = "lognormal"
    mean_ms: float = Field(gt=0)
    cv: float = Field(gt=0)

    def mean_s(self, batch_size: int) -> float:
        return self.mean_ms / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        mu, sigma = lognormal_params(self.mean_ms / 1000.0, self.cv)
        draws = buffered(rng.standard_normal)
        return lambda batch_size: math.exp(mu + sigma * next(draws))

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        mu, sigma = lognormal_params(self.mean_ms / 1000.0, self.cv)
        return BatchTimeTable(FORM_LOGNORMAL, "standard_normal", np.ones(max_batch_size + 1), mu, sigma)


class LinearService(ServiceTimeModel):
    """Batch time `base_ms + per_item_ms × k` — fixed launch overhead plus per-request work, the
    first-order shape of batched inference. With `cv` > 0 the time is lognormal around that mean."""

    kind: Literal["linear"] = "linear"
    base_ms: float = Field(ge=0)
    per_item_ms: float = Field(ge=0)
    cv: float = Field(default=0.0, ge=0)

    def mean_s(self, batch_size: int) -> float:
        return (self.base_ms + self.per_item_ms * batch_size) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        if self.cv == 0:
            return self.mean_s
        _, sigma = lognormal_params(1.0, self.cv)
        draws = buffered(rng.standard_normal)
        # A unit-mean lognormal factor keeps the mean exact for every batch size.
        shift = -0.5 * sigma * sigma
        base_s, per_item_s = self.base_ms / 1000.0, self.per_item_ms / 1000.0
        exp = math.exp
        return lambda batch_size: (base_s + per_item_s * batch_size) * exp(shift + sigma * next(draws))

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        if self.cv == 0:
            return _mean_table(self, max_batch_size)
        _, sigma = lognormal_params(1.0, self.cv)
        base_s, per_item_s = self.base_ms / 1000.0, self.per_item_ms / 1000.0
        scale_s = np.array([base_s + per_item_s * k for k in range(max_batch_size + 1)])
        return BatchTimeTable(FORM_LOGNORMAL, "standard_normal", scale_s, -0.5 * sigma * sigma, sigma)
