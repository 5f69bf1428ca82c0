"""Every autoscaler on an LLM fleet: the engines' pool (capsim/serving/llm/pool.py) as the controller
of capsim/autoscale/controller.py drives any policy (HPA, KPA, KEDA, Ray Serve), through the
`ScalableFleet` protocol of capsim/autoscale/view.py.

What the policies read, as vLLM exports it (docs/model.md "LLM autoscaling signals"):
- `queue` — requests waiting in the engines, new and preempted (vllm:num_requests_waiting): HPA and
  KEDA `metric: queue_length`, the vLLM production stack's KEDA example;
- `running` — the time integral of requests running (vllm:num_requests_running): HPA and KEDA
  `metric: running`, KServe's KEDA example;
- `concurrency` — the integral of waiting + running: KPA's and Ray Serve's ongoing requests, HPA and
  KEDA `metric: concurrency`;
- `kv_used` — the integral of KV blocks in use over one replica's blocks (the replicas'
  vllm:kv_cache_usage_perc summed): HPA `metric: kv_cache_utilization`;
- `busy` — the integral of engines running a step (one executor per replica: HPA `utilization`,
  what a GPU utilization gauge shows, pinned high at any load, as llm-d warns);
- `arrivals` — requests arrived so far (new and follow-up turns): HPA and KPA `rps`.

An LLM fleet has no activator (requests that find no replica ready are refused), so the policies'
`min_replicas` must be at least 1 (capsim.serving.llm.spec).
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import dataclass

from capsim.serving.llm.plane import (
    C_BLOCKS,
    I_ARRIVED,
    I_RUNNING,
    I_TICK,
    I_WAITING,
    L_BUSY,
    L_RUNNING,
    L_USED_BLOCKS,
    L_WAITING,
)
from capsim.serving.llm.pool import LlmPool


@dataclass(frozen=True)
class EngineShape:
    """A replica as the controller reads it: one engine (utilization = the share of time it steps)."""

    instances: int = 1


class ScaledEngines:
    """An `LlmPool` as `AutoscaleController` drives it (capsim.autoscale.view.ScalableFleet)."""

    def __init__(self, pool: LlmPool) -> None:
        self.pool = pool
        self.config = EngineShape()
        self.on_buffered: Callable[[float], None] | None = None  # no activator: never called

    @property
    def current(self) -> int:
        """Replicas ready or starting (Kubernetes `spec.replicas`)."""
        return self.pool.ready() + len(self.pool.starter.pending)

    @property
    def ready(self) -> range:
        """Replicas in the balancer (only their number is read)."""
        return range(self.pool.ready())

    @property
    def starting(self) -> Sized:
        """Replicas in their cold start."""
        return self.pool.starter.pending

    def sample(self) -> dict[str, float]:
        """Every metric of capsim.autoscale.view.METRICS now (module docstring)."""
        now = self.pool.sync()
        fleet = self.pool.fleet
        fleet.integrate_levels_to(now)
        p = fleet.plane
        upto = int(p.ints[I_TICK]) + 1  # the bins after the current tick hold nothing yet
        running = float(p.areas[L_RUNNING, :upto].sum())
        return {
            "concurrency": running + float(p.areas[L_WAITING, :upto].sum()),
            "busy": float(p.areas[L_BUSY, :upto].sum()),
            "queue": float(p.ints[I_WAITING]),
            "arrivals": float(p.ints[I_ARRIVED]),
            "running": running,
            "kv_used": float(p.areas[L_USED_BLOCKS, :upto].sum()) / float(p.cfg_i[C_BLOCKS]),
        }

    def in_flight_now(self) -> int:
        """Requests waiting or running now."""
        self.pool.sync()
        ints = self.pool.fleet.plane.ints
        return int(ints[I_RUNNING] + ints[I_WAITING])

    def scale_to(self, desired: int) -> None:
        """Start or drain replicas towards `desired` (LlmPool.scale_to)."""
        self.pool.scale_to(desired)
