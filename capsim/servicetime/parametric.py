"""Closed-form service-time models: deterministic, exponential, lognormal, and linear in batch size.

Each may grow with the batch's size (docs/model.md "Request size"): `per_size_unit_ms` adds that
much per size unit of the batch's work u (`size_rule`: its requests' total size, or count × largest
when padded) to the mean. Without `workload.size` every request has size 1, so u = k."""

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
    SIZE_RULES,
    BatchSampler,
    BatchTimeTable,
    Draw,
    SizedServiceModel,
    lognormal_params,
)


class _SizeTerm(SizedServiceModel):
    per_size_unit_ms: float = Field(default=0.0, ge=0, description="added per size unit of the batch's work")

    def _size_ms(self, batch_size: int, items: float | None) -> float:
        """The size term of the mean (ms): `per_size_unit_ms` × the batch's work (k without sizes)."""
        return self.per_size_unit_ms * (batch_size if items is None else items)

    def _table(self, form: int, draw: Draw, scale_s: np.ndarray, loc: float = 0.0, sigma: float = 0.0
               ) -> BatchTimeTable:  # fmt: skip
        """The compiled table of the count term `scale_s`, with the size term (`size_s`) beside it."""
        size_s = self.per_size_unit_ms / 1000.0
        return BatchTimeTable(form, draw, scale_s, loc, sigma, size_s=size_s, size_rule=SIZE_RULES[self.size_rule])

    def _count_table(self, max_batch_size: int) -> BatchTimeTable:
        """FORM_TABLE: the mean's count term per k, the size term beside it."""
        count_s = np.array([self.mean_s(k, 0.0) for k in range(max_batch_size + 1)])
        return self._table(FORM_TABLE, None, count_s)


class DeterministicService(_SizeTerm):
    """Every batch takes exactly `mean_ms` (whatever its size), plus `per_item_ms` per request after
    the first and `per_size_unit_ms` per size unit."""

    kind: Literal["deterministic"] = "deterministic"
    mean_ms: float = Field(gt=0)
    per_item_ms: float = Field(default=0.0, ge=0)

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        return (self.mean_ms + self.per_item_ms * (batch_size - 1) + self._size_ms(batch_size, items)) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        return self.mean_s

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        return self._count_table(max_batch_size)


class ExponentialService(_SizeTerm):
    """Exponential batch times with mean `mean_ms` (plus `per_size_unit_ms` per size unit): the
    memoryless M/M/c reference model."""

    kind: Literal["exponential"] = "exponential"
    mean_ms: float = Field(gt=0)

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        return (self.mean_ms + self._size_ms(batch_size, items)) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        draws = buffered(rng.standard_exponential)
        return lambda batch_size, items=None: self.mean_s(batch_size, items) * next(draws)

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        scale_s = np.full(max_batch_size + 1, self.mean_ms / 1000.0)
        return self._table(FORM_EXPONENTIAL, "standard_exponential", scale_s)


class LognormalService(_SizeTerm):
    """Lognormal batch times with mean `mean_ms` and coefficient of variation `cv`: the usual shape
    of measured inference latency (a floor and a right tail)."""

    kind: Literal["lognormal"] = "lognormal"
    mean_ms: float = Field(gt=0)
    cv: float = Field(gt=0)

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        return (self.mean_ms + self._size_ms(batch_size, items)) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        draws = buffered(rng.standard_normal)
        if self.per_size_unit_ms > 0:  # a unit-mean factor on the size-dependent mean
            _, sigma = lognormal_params(1.0, self.cv)
            shift = -0.5 * sigma * sigma
            return lambda batch_size, items=None: self.mean_s(batch_size, items) * math.exp(shift + sigma * next(draws))
        mu, sigma = lognormal_params(self.mean_ms / 1000.0, self.cv)
        return lambda batch_size, items=None: math.exp(mu + sigma * next(draws))

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        if self.per_size_unit_ms > 0:
            _, sigma = lognormal_params(1.0, self.cv)
            scale_s = np.full(max_batch_size + 1, self.mean_ms / 1000.0)
            return self._table(FORM_LOGNORMAL, "standard_normal", scale_s, -0.5 * sigma * sigma, sigma)
        mu, sigma = lognormal_params(self.mean_ms / 1000.0, self.cv)
        return self._table(FORM_LOGNORMAL, "standard_normal", np.ones(max_batch_size + 1), mu, sigma)


class LinearService(_SizeTerm):
    """Batch time `base_ms + per_item_ms × k + per_size_unit_ms × u` — fixed launch overhead plus
    per-request and per-size-unit work (u: the batch's work in size units), the first-order shape of
    batched inference. With `cv` > 0 the time is lognormal around that mean."""

    kind: Literal["linear"] = "linear"
    base_ms: float = Field(ge=0)
    per_item_ms: float = Field(ge=0)
    cv: float = Field(default=0.0, ge=0)

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        return (self.base_ms + self.per_item_ms * batch_size + self._size_ms(batch_size, items)) / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        if self.cv == 0:
            return self.mean_s
        _, sigma = lognormal_params(1.0, self.cv)
        draws = buffered(rng.standard_normal)
        # A unit-mean lognormal factor keeps the mean exact for every batch size.
        shift = -0.5 * sigma * sigma
        exp = math.exp
        if self.per_size_unit_ms > 0:
            return lambda batch_size, items=None: self.mean_s(batch_size, items) * exp(shift + sigma * next(draws))
        base_s, per_item_s = self.base_ms / 1000.0, self.per_item_ms / 1000.0
        return lambda batch_size, items=None: (base_s + per_item_s * batch_size) * exp(shift + sigma * next(draws))

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        if self.cv == 0:
            return self._count_table(max_batch_size)
        _, sigma = lognormal_params(1.0, self.cv)
        base_s, per_item_s = self.base_ms / 1000.0, self.per_item_ms / 1000.0
        scale_s = np.array([base_s + per_item_s * k for k in range(max_batch_size + 1)])
        return self._table(FORM_LOGNORMAL, "standard_normal", scale_s, -0.5 * sigma * sigma, sigma)
