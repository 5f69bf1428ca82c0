"""What a service-time model provides: how long one batch of k requests takes on one executor."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel

BatchSampler = Callable[..., float]
"""Draws the service time in seconds of one batch: `(batch_size)` or `(batch_size, items)`, items
being the batch's work in size units (None or left out: each request of size 1)."""

Draw = Literal["standard_normal", "standard_exponential", "random"] | None
"""Which numpy draw a compiled service time takes per batch (None: none)."""


FORM_TABLE = 0
FORM_EXPONENTIAL = 1
FORM_LOGNORMAL = 2
FORM_QUANTILE = 3

SIZE_RULES = {"total": 0, "max": 1}
"""`size_rule` codes (capsim.serving.dataplane.rules.batch_items): a batch's work in size units is
its requests' total size, or — padded to its longest request, as servers batch tensors — its
request count × its largest size."""


@dataclass(frozen=True)
class BatchTimeTable:
    """A service-time model as the compiled engine draws it (capsim/serving/dataplane): per batch
    size k, one draw x from the model's stream (none for FORM_TABLE), and

    - FORM_TABLE: `scale_s[k]`;
    - FORM_EXPONENTIAL: `scale_s[k] * x`, x standard exponential;
    - FORM_LOGNORMAL: `scale_s[k] * exp(loc + sigma * x)`, x standard normal;
    - FORM_QUANTILE: the curve `quantiles_s[k]` on `levels`, linearly interpolated at x uniform.

    It must give exactly what the model's `sampler` gives for the same draws: both engines then
    follow the same sample path.

    Request sizes (docs/model.md "Request size") enter through the batch's work in size units u
    (`batch_items`): the forms' scale is `scale_s[k] + size_s * u`, and a profile with a size axis
    holds one curve per (k, size grid point j) in row `k * len(size_grid) + j` of `quantiles_s`,
    blended linearly at the per-request size u / k. Without sizes u = k, and a model without a size
    term (size_s = 0, one grid point) gives exactly what it gave before sizes existed."""

    form: int
    draw: Draw
    scale_s: np.ndarray  # indexed by batch size, 0..max
    loc: float = 0.0
    sigma: float = 0.0
    levels: np.ndarray = field(default_factory=lambda: np.zeros(1))
    quantiles_s: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))
    size_s: float = 0.0
    size_grid: np.ndarray = field(default_factory=lambda: np.ones(1))
    size_rule: int = 0

    def without_sizes(self) -> BatchTimeTable:
        """The table for requests of size 1 (a batch of k does k units), what the loops without
        request sizes read (streaming, async): the size term folded into the count term. A profile
        with a size axis has no such table: its curves are measured per request size."""
        if self.size_grid.size > 1:
            raise CapsimInputError("a profile with a size axis (size_unit) needs request sizes: serving.mode "
                                   "realtime with workload.size", field="service.path")  # fmt: skip
        if self.size_s == 0:
            return self
        return dataclasses.replace(self, scale_s=self.scale_s + self.size_s * np.arange(self.scale_s.size), size_s=0.0)


class ServiceTimeModel(InputModel):
    """Base of service-time specs: each subclass is both the scenario schema and the sampler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        """Expected service time in seconds of a batch of `batch_size` requests doing `items` size
        units of work (by `size_rule`; None: each request of size 1)."""

    @abstractmethod
    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        """A function drawing batch service times from `rng` (buffered: draws come in numpy chunks)."""

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable | None:
        """The model in the compiled data plane's form for batches of 1..`max_batch_size`; None when
        it has none (a real-time scenario using it is then refused, naming `service.kind`)."""
        return None

    def resolve_paths(self, base_dir: Path) -> ServiceTimeModel:
        """A copy whose relative file paths are taken relative to `base_dir`."""
        return self

    def describe(self) -> dict[str, object]:
        """What the summary shows about the model (profiles add their provenance)."""
        return {"kind": getattr(self, "kind", type(self).__name__)}


class SizedServiceModel(ServiceTimeModel):
    """A batch service-time model whose time may grow with the batch's size (docs/model.md
    "Request size"): `size_rule` says what that size is."""

    size_rule: Literal["total", "max"] = Field(
        default="total", description="a batch's size: its requests' total, or count × largest (padded)"
    )


def lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and coefficient of variation."""
    sigma2 = np.log1p(cv * cv)
    return float(np.log(mean) - 0.5 * sigma2), float(np.sqrt(sigma2))
