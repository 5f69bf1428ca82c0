"""Request sizes: how much work each request brings, in the workload's own unit (docs/model.md
"Request size").

`workload.size` names the unit ("pixels", "tokens", "features": whatever the service time grows
with) and one distribution of whole counts >= 1 per request:

- `fixed {value}`, `lognormal {mean, cv, max}` (draws outside [1, max] redrawn, never clipped),
  `empirical {file, column}` and `trace {column}` (the trace arrival's own column, row by row):
  the same distributions as LLM token counts (capsim.workload.tokens), sampled by the same code;
- `uniform {low, high}`: every whole count in [low, high] equally likely.

Sizes are drawn from their own named stream, "size" (capsim.rng), one per request in arrival
order: adding or changing `workload.size` leaves the arrival times unchanged (common random
numbers). A request without a size section has size 1; the service time then sees the batch's
request count as its size, and every result is what it was before sizes existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel
from capsim.workload.tokens import EmpiricalTokens, FixedTokens, LognormalTokens, TraceTokens, draw_counts

if TYPE_CHECKING:
    from capsim.workload.base import ArrivalProcess

SIZE_STREAM = "size"
_FIELD = "workload.size.distribution"


class UniformSize(InputModel):
    """Every whole count in [`low`, `high`] equally likely."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["uniform"] = "uniform"
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> UniformSize:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def expected_mean(self) -> float:
        """The mean size."""
        return 0.5 * (self.low + self.high)


SizeDistribution = Annotated[
    FixedTokens | UniformSize | LognormalTokens | EmpiricalTokens | TraceTokens, Field(discriminator="kind")
]


class SizeSpec(InputModel):
    """`workload.size`: the unit and the per-request distribution (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: str = Field(default="items", min_length=1, description="what a size counts: pixels, tokens, features")
    distribution: SizeDistribution

    def resolve_paths(self, base_dir: Path) -> SizeSpec:
        """A copy whose relative `empirical` file is taken relative to `base_dir`."""
        dist = self.distribution
        if isinstance(dist, EmpiricalTokens) and not Path(dist.file).is_absolute():
            return self.model_copy(update={"distribution": dist.model_copy(update={"file": str(base_dir / dist.file)})})
        return self

    def bounds(self) -> tuple[float, float]:
        """(smallest, largest) size a request can have (largest inf: unbounded, or a trace column
        known only once read): what a profile's size axis must span for its interpolation to cover
        every batch (capsim.servicetime.profile)."""
        dist = self.distribution
        if isinstance(dist, FixedTokens):
            return float(dist.value), float(dist.value)
        if isinstance(dist, UniformSize):
            return float(dist.low), float(dist.high)
        if isinstance(dist, LognormalTokens):
            return 1.0, float(dist.max) if dist.max is not None else float("inf")
        if isinstance(dist, EmpiricalTokens):
            values = dist.values(_FIELD)
            return float(values.min()), float(values.max())
        return 1.0, float("inf")


class SizeSampler:
    """Draws the sizes of successive requests (in arrival order) from the "size" stream."""

    def __init__(self, spec: SizeSpec, rng: np.random.Generator, arrival: ArrivalProcess | None = None) -> None:
        from capsim.workload.trace import TraceArrival

        self.spec = spec
        self._rng = rng
        self._trace = arrival if isinstance(arrival, TraceArrival) else None
        self._drawn = 0  # requests sized so far (a trace column is read from here on)

    def draw(self, n: int) -> np.ndarray:
        """The sizes (float64, whole counts >= 1) of the next `n` requests."""
        dist = self.spec.distribution
        if isinstance(dist, UniformSize):
            sizes = self._rng.integers(dist.low, dist.high + 1, size=n).astype(np.float64)
        elif isinstance(dist, TraceTokens):  # row i of the replay is request i's size
            column = draw_counts(dist, _FIELD, "size", self._drawn + n, self._rng, self._trace)
            sizes = column[self._drawn :].astype(np.float64)
        else:
            sizes = draw_counts(dist, _FIELD, "size", n, self._rng, self._trace).astype(np.float64)
        self._drawn += n
        return sizes
