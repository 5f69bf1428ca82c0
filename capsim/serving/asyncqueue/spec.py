"""The schema of `serving.mode: async`: the queue pattern (202 Accepted, a queue, batch-pulling
workers, a result store, polling clients). docs/model.md ("Async queue") states the rules exactly."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale.keda import KedaPolicy
from capsim.input_model import InputModel
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.coldstart import ColdStart


class AsyncServing(InputModel):
    """Jobs are accepted at once, queued, scored in batches by workers, written to a result store and
    picked up by clients that poll at a fixed interval from their submission."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["async"]
    workers: int = Field(ge=1, description="workers at t = 0 (ready); the initial count under autoscaling")
    max_batch_size: int = Field(default=1, ge=1, le=100_000, description="messages a worker takes at most per pull")
    batch_wait_ms: float = Field(
        default=0.0, ge=0, le=3_600_000,
        description="a free worker waits until max_batch_size are queued or the oldest has waited this long; "
        "0 takes what is there (SQS ReceiveMessage answers as soon as messages exist)",
    )  # fmt: skip
    store_write_ms: float = Field(
        default=0.0, ge=0, le=3_600_000, description="writing a batch's results to the store; the worker waits for it"
    )
    poll_interval_ms: float = Field(
        gt=0, le=86_400_000, description="clients poll at submit + k × interval, k = 1, 2, ..."
    )
    autoscaling: KedaPolicy | None = Field(
        default=None, description="KEDA on the queue: metric queue_length (waiting) or concurrency (waiting + in work)"
    )
    cold_start: ColdStart = ColdStart()

    @model_validator(mode="after")
    def _workers_within_bounds(self) -> AsyncServing:
        scaler = self.autoscaling
        if scaler is not None and not max(scaler.min_replicas, 1) <= self.workers <= scaler.max_replicas:
            raise ValueError(
                f"workers ({self.workers}) is the initial count and must lie within autoscaling "
                f"[max(min_replicas, 1), max_replicas] = [{max(scaler.min_replicas, 1)}, {scaler.max_replicas}]"
            )
        if scaler is not None:
            scaler.refuse_llm_only_metrics()
        return self

    def max_workers(self) -> int:
        """The most workers the pool can reach."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.workers

    def capacity_rps(self, service: ServiceTimeModel) -> float:
        """Best-case throughput: every worker pulls full batches back to back (write included)."""
        batch = self.max_batch_size
        return self.max_workers() * batch / (service.mean_s(batch) + self.store_write_ms / 1000.0)
