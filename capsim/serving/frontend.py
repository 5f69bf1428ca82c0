"""`serving.frontend`: a replica's request front end, the CPU work before a request reaches the
batcher, as a queue (the compiled data plane runs it: capsim/serving/dataplane/kernel.py).

Why: `overhead_ms` is a fixed delay, and a fixed delay never saturates. A real server's front end
(HTTP parsing, JSON or protobuf decoding, building the response; in a Python server one event loop
holding the GIL) is a resource with a capacity. Measured on the bundled reference server, the time
outside the batcher's queue and the executor grew with load (H100, CNN: median 1.1 ms at low load,
14 ms at 70% of saturation) and the front end, not the GPU, set the capacity (~1.9k requests/s with
the GPU under 4% busy): docs/reference_server.md, docs/validation.md.

The model: each replica has `workers` front-end servers taking requests first come, first served;
a request holds one for `per_request_ms` (fixed, or lognormal with coefficient of variation `cv`),
then joins the batcher's queue. The batching window counts from that moment, as Triton's counts
from when its scheduler receives a request. A replica's front end saturates at
`workers / per_request_ms` requests per millisecond whatever the batching.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from capsim.input_model import InputModel


class FrontEndSpec(InputModel):
    """`serving.frontend`: the per-request CPU work in front of the batcher, and how much runs at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    workers: int = Field(default=1, ge=1, description="requests handled at once (a single Python event loop: 1)")
    per_request_ms: float = Field(gt=0, description="front-end time of one request: decode, route, encode")
    cv: float = Field(default=0.0, ge=0, description="coefficient of variation of that time (lognormal); 0: fixed")
    window_late_quantiles_ms: list[float] | None = Field(
        default=None, min_length=2,
        description="the batching window's timer runs on the front end's loop and fires late: quantiles of that "
                    "lateness (ms, non-decreasing, ≥ 0) at evenly spaced probabilities from 0 to 1; none: on time",
    )  # fmt: skip

    @field_validator("window_late_quantiles_ms")
    @classmethod
    def _quantiles_ordered(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if any(v < 0 or not math.isfinite(v) for v in value):
                raise ValueError("expected finite lateness quantiles >= 0 (ms)")
            if any(b < a for a, b in itertools.pairwise(value)):
                raise ValueError("expected non-decreasing quantiles (ms), from the 0th to the 100th percentile")
        return value

    @property
    def capacity_rps(self) -> float:
        """Requests per second one replica's front end can take."""
        return self.workers / (self.per_request_ms / 1000.0)

    def lognormal_mu_sigma(self) -> tuple[float, float]:
        """(mu, sigma) of the lognormal front-end time in seconds (cv > 0): its mean is per_request_ms."""
        sigma = math.sqrt(math.log1p(self.cv * self.cv))
        return math.log(self.per_request_ms / 1000.0) - sigma * sigma / 2, sigma

    def window_late_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws of how late the batching timer fires (seconds; `window_late_quantiles_ms` set):
        inverse CDF through the quantiles, linear in between — the measured distribution, no
        parametric tail beyond what was measured."""
        assert self.window_late_quantiles_ms is not None
        late_s = np.asarray(self.window_late_quantiles_ms, dtype=float) / 1000.0
        return np.interp(rng.random(n), np.linspace(0.0, 1.0, late_s.size), late_s)
