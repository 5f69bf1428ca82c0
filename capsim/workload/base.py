"""What every arrival process provides. Pure numpy: the load tester reuses these to schedule real
requests, so nothing here may depend on SimPy."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import ConfigDict

from capsim.input_model import InputModel

DEFAULT_CHUNK = 65_536


class ArrivalProcess(InputModel):
    """Base of the arrival-process specs: each subclass is both the scenario schema and the sampler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        """Arrival times in seconds from 0, strictly in [0, duration_s), non-decreasing, in chunks."""

    @abstractmethod
    def mean_rate_rps(self, duration_s: float) -> float:
        """Expected number of arrivals per second over [0, duration_s)."""

    def peak_rate_rps(self, duration_s: float) -> float:
        """Highest instantaneous rate over the run (equals the mean for stationary processes)."""
        return self.mean_rate_rps(duration_s)

    def times(self, rng: np.random.Generator, duration_s: float) -> np.ndarray:
        """All arrival times over [0, duration_s) as one array."""
        parts = list(self.chunks(rng, duration_s))
        return np.concatenate(parts) if parts else np.empty(0)

    def resolve_paths(self, base_dir: Path) -> ArrivalProcess:
        """A copy whose relative file paths are taken relative to `base_dir` (the scenario's folder)."""
        return self


def renewal_chunks(
    gaps: object, first_s: float, duration_s: float, chunk: int
) -> Iterator[np.ndarray]:
    """Times of a renewal process whose inter-arrival gaps come from `gaps(n)` (n draws at a time)."""
    t = first_s
    while t < duration_s:
        times = t + np.cumsum(gaps(chunk))  # type: ignore[operator]
        inside = times[times < duration_s]
        if inside.size:
            yield inside
        if inside.size < times.size:
            return
        t = float(times[-1])


def poisson_segment(rng: np.random.Generator, rate_rps: float, start_s: float, end_s: float) -> np.ndarray:
    """Exact homogeneous Poisson arrivals on [start_s, end_s): a Poisson count N, then N sorted
    uniforms — drawn already sorted, as the normalized partial sums of N + 1 standard exponentials
    (S_i / S_{N+1} are distributed as the order statistics of N uniforms), which costs a cumulative
    sum instead of a sort."""
    if rate_rps <= 0 or end_s <= start_s:
        return np.empty(0)
    count = int(rng.poisson(rate_rps * (end_s - start_s)))
    if count == 0:
        return np.empty(0)
    sums = np.cumsum(rng.standard_exponential(count + 1))
    times = sums[:-1]  # (in place: the same operations as start + (end - start) * (sums[:-1] / sums[-1]))
    times /= sums[-1]
    times *= end_s - start_s
    times += start_s
    return np.minimum(times, np.nextafter(end_s, start_s), out=times)  # [start, end), whatever the rounding
