"""Correlated batch times: runs of slow batches, with the profile's marginal kept exact.

A profile draws each batch's time from its measured distribution through a uniform u (inverse
CDF). Independent u's make independent batch times; the reference server's batch log shows
otherwise — on the quiet CPU the normal score of a batch of one's time has a lag-1 autocorrelation
of 0.45–0.49 for the transformer and still 0.2–0.3 twenty batches later (docs/validation.md): the
executor is slowed for tens of batches at a time (other processes, garbage collection, the front
end's loop taking the cores) and a queue builds behind it.

`BatchCorrelation` replaces the independent u's by correlated ones, a Gaussian copula in batch
order: a latent speed state x follows an AR(1), each batch's normal score mixes it with fresh noise,

    x_t = decay · x_{t−1} + sqrt(1 − decay²) · e_t
    z_t = sqrt(w) · x_t + sqrt(1 − w) · f_t,      w = lag1 / decay
    u_t = Φ(z_t)

so z_t is standard normal at every step (u_t uniform: the marginal is exactly the profile's) and the
autocorrelation of z is `lag1 · decay^(k−1)` at lag k ≥ 1. With `decay = lag1` (the default) it is
the plain AR(1) z_t = lag1 · z_{t−1} + …; a `decay` near 1 is a slow state (the measured runs' ACF
decays slowly from a lag-1 value well below 1, which one AR(1) coefficient cannot fit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel
from capsim.rng import buffered

_SQRT_HALF = math.sqrt(0.5)


class BatchCorrelation(InputModel):
    """`service.correlation` of a profile service: successive batch times of one replica correlated
    in batch order (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lag1: float = Field(ge=0.0, lt=1.0, description="autocorrelation of the batch times' normal scores at lag 1")
    decay: float | None = Field(
        default=None, gt=0.0, lt=1.0,
        description="ratio of the autocorrelation at lag k+1 to lag k (default: lag1, a plain AR(1)); "
        "must be >= lag1",
    )  # fmt: skip

    @model_validator(mode="after")
    def _decay_at_least_lag1(self) -> BatchCorrelation:
        if self.decay is not None and self.decay < self.lag1:
            raise ValueError(f"decay ({self.decay}) must be >= lag1 ({self.lag1}): the latent state's own "
                             "lag-1 autocorrelation bounds the batch times'")
        return self

    @property
    def effective_decay(self) -> float:
        """`decay`, or `lag1` when none was given."""
        return self.lag1 if self.decay is None else self.decay

    def autocorrelation(self, lag: int) -> float:
        """The normal scores' autocorrelation at `lag` batches."""
        return 1.0 if lag == 0 else self.lag1 * self.effective_decay ** (lag - 1)

    def uniforms(self, rng: np.random.Generator) -> Iterator[float]:
        """An endless sequence of uniforms on (0, 1), each exactly uniform, correlated as described."""
        decay = self.effective_decay
        if decay <= 0.0:  # lag1 = 0: independent scores (still through Φ, so one code path)
            decay, share = 0.0, 0.0
        else:
            share = self.lag1 / decay
        innovation = math.sqrt(1.0 - decay * decay)
        mix_state, mix_noise = math.sqrt(share), math.sqrt(1.0 - share)
        normals = buffered(rng.standard_normal)
        erf = math.erf
        state = next(normals)  # the stationary start: x_0 ~ N(0, 1), no burn-in needed
        while True:
            z = mix_state * state + mix_noise * next(normals)
            yield 0.5 * (1.0 + erf(z * _SQRT_HALF))
            state = decay * state + innovation * next(normals)

