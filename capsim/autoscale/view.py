"""What an autoscaling policy sees when it decides: replica counts now and metric samples from the
recent past (scraped every `sample_interval_s`, like Knative's 1 s scrape of pod metrics); and what
the controller needs of a fleet (`ScalableFleet`), so that autoscaling never imports serving."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

METRICS = ("concurrency", "busy", "queue", "arrivals", "running", "kv_used")
"""Samples kept: the time integrals since t = 0 of outstanding requests (queued + in service +
buffered at the activator) and of busy executors; waiting requests (queued + buffered, a gauge);
and the cumulative count of arrivals. LLM fleets add the time integrals of requests running in the
engines (vLLM's num_requests_running) and of KV-cache use in replicas' worth of blocks (the sum of
the replicas' kv_cache_usage_perc); other fleets leave them out (NaN)."""
INTEGRATED = ("concurrency", "busy", "running", "kv_used")
LLM_METRICS = ("running", "kv_used")


@dataclass
class MetricSamples:
    """Fleet-wide metric samples, appended in time order."""

    times_s: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def record(self, t_s: float, **values: float) -> None:
        """Append one sample of every metric (NaN for an LLM metric the fleet does not give)."""
        self.times_s.append(t_s)
        for name in METRICS:
            self.values[name].append(values[name] if name not in LLM_METRICS else values.get(name, math.nan))

    def _window(self, window_s: float, end_s: float) -> slice:
        # bisect on the list itself: converting a long history to an array per call would make a
        # day-long run quadratic.
        times = self.times_s
        return slice(bisect.bisect_right(times, end_s - window_s), bisect.bisect_right(times, end_s))

    def mean(self, name: str, window_s: float, end_s: float) -> float:
        """Time average over the window ending at the last sample at or before `end_s` (exact for the
        integrated metrics; the mean of the gauge's samples in (end_s - window_s, end_s] otherwise).
        NaN when the window holds no data."""
        if name in INTEGRATED:
            times = self.times_s
            hi = bisect.bisect_right(times, end_s) - 1
            lo = bisect.bisect_left(times, times[hi] - window_s - 1e-9) if hi >= 0 else 0
            if hi < 0 or times[hi] <= times[lo]:
                return math.nan
            area = self.values[name]
            return (area[hi] - area[lo]) / (times[hi] - times[lo])
        window = self._window(window_s, end_s)
        values = self.values[name][window]
        return float(np.mean(values)) if values else math.nan

    def rate_per_s(self, window_s: float, end_s: float) -> float:
        """Arrivals per second over (end_s - window_s, end_s], from the cumulative counter."""
        window = self._window(window_s, end_s)
        times = self.times_s[window]
        counts = self.values["arrivals"][window]
        if len(times) < 2:
            return math.nan
        return (counts[-1] - counts[0]) / (times[-1] - times[0])


@dataclass
class FleetView:
    """The state a policy decides on."""

    now_s: float
    current: int  # the replica count the controller last asked for (Kubernetes `spec.replicas`)
    ready: int  # replicas serving traffic
    not_ready: int  # replicas starting (provisioning, pulling, loading): no metrics yet
    executors_per_replica: int
    samples: MetricSamples
    in_flight_now: int = 0  # requests queued, in service or waiting in the activator right now


class ReplicaShape(Protocol):
    """A fleet's replica configuration as the controller reads it."""

    @property
    def instances(self) -> int:
        """Model executors per replica."""
        ...


class ScalableFleet(Protocol):
    """A fleet as `AutoscaleController` drives it (capsim.serving.fleet.RealtimeFleet is one)."""

    on_buffered: Callable[[float], None] | None
    """Set by the controller: called with the time when requests wait with no replica ready."""

    @property
    def current(self) -> int:
        """The replica count last asked for."""
        ...

    @property
    def ready(self) -> Sized:
        """Replicas serving traffic."""
        ...

    @property
    def starting(self) -> Sized:
        """Replicas starting (provisioning, pulling, loading)."""
        ...

    @property
    def config(self) -> ReplicaShape:
        """The replicas' configuration."""
        ...

    def sample(self) -> dict[str, float]:
        """One sample of every metric in `METRICS`."""
        ...

    def in_flight_now(self) -> int:
        """Requests queued, in service or buffered right now."""
        ...

    def scale_to(self, desired: int) -> None:
        """Start or drain replicas towards `desired`."""
        ...
