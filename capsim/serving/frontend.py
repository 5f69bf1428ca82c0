"""A replica's request front end: the CPU work before a request reaches the batcher, as a queue.

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

import heapq
import itertools
import math
from collections.abc import Callable

import numpy as np
import simpy
from pydantic import ConfigDict, Field, field_validator

from capsim.input_model import InputModel
from capsim.rng import buffered


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

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        """Seconds of front-end time for the next request. With `window_late_quantiles_ms` the
        callable is a `FrontEndDraws`, which also carries the lateness draws to the replica (the fleet
        hands the replica nothing else of the front end's spec)."""
        mean_s = self.per_request_ms / 1000.0
        draw: Callable[[], float]
        if self.cv == 0:
            draw = lambda: mean_s  # noqa: E731
        else:
            mu, sigma = self.lognormal_mu_sigma()
            draw = buffered(lambda n: rng.lognormal(mu, sigma, n)).__next__
        if self.window_late_quantiles_ms is not None:
            # Inverse CDF through the quantiles, linear in between: the measured distribution, no
            # parametric tail beyond what was measured.
            late_s = np.asarray(self.window_late_quantiles_ms, dtype=float) / 1000.0
            grid = np.linspace(0.0, 1.0, late_s.size)
            return FrontEndDraws(draw, buffered(lambda n: np.interp(rng.random(n), grid, late_s)).__next__)
        return draw


class FrontEndDraws:
    """A front end's draws (seconds per request) and, because its loop fires the batching timer
    late, the lateness draws (seconds per timer): the replica unwraps it, so that the front end's own
    hot path calls the plain draw, and delays every batching timer by a lateness draw."""

    __slots__ = ("draw", "window_late_s")

    def __init__(self, draw: Callable[[], float], window_late_s: Callable[[], float]) -> None:
        self.draw = draw
        self.window_late_s = window_late_s

    def __call__(self) -> float:
        return self.draw()


class FrontEnd:
    """`workers` FIFO servers; each request is handed to `deliver(request_id, now)` when done.

    With first-come-first-served servers the finishing time of a request is known when it arrives
    (start at the earliest moment a server is free), so the front end costs one kernel event per
    request and keeps no queue of its own.
    """

    def __init__(
        self, env: simpy.Environment, workers: int, sample_s: Callable[[], float],
        deliver: Callable[[int, float], None],
    ) -> None:  # fmt: skip
        self._env = env
        self._free_at_s = [0.0] * workers  # a min-heap: when each server is next free
        self._sample_s = sample_s
        self._deliver = deliver
        self.inside = 0  # requests waiting for or holding a server
        # When each request now in the replica's batcher queue joined it: its batching window starts there.
        self.entered_s: dict[int, float] = {}

    def admit(self, request_id: int, now: float) -> None:
        """A request arrives at `now` (which may be ahead of the kernel clock, as in `Replica.enqueue`)."""
        free_at_s = self._free_at_s
        start_s = free_at_s[0] if free_at_s[0] > now else now
        done_s = start_s + self._sample_s()
        heapq.heapreplace(free_at_s, done_s)
        self.inside += 1
        env = self._env
        env.timeout(done_s - env.now, request_id).callbacks.append(self._on_done)

    def _on_done(self, event: simpy.Event) -> None:
        self.inside -= 1
        self._deliver(event.value, self._env.now)  # type: ignore[arg-type]
