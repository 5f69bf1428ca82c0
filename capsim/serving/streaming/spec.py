"""The schema of `serving.mode: streaming`: a topic, a consumer group, Kafka's poll settings, the
rebalance protocol and KEDA's Kafka autoscaler. Defaults are Kafka's and KEDA's own
(docs/sources.md#keda and #kafka-consumers); docs/model.md states the rules exactly."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, ScalingRules
from capsim.autoscale.keda import KedaPolicy
from capsim.input_model import InputModel
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.coldstart import ColdStart

# A consumer that does not call poll() within max.poll.interval.ms (300 000 by default) is removed
# from the group, so a longer broker wait than that can never be a working configuration.
MAX_POLL_INTERVAL_MS = 300_000.0


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rebalance(_Strict):
    """`serving.rebalance`: what a membership change costs.

    `eager` (Range/RoundRobin assignors, Kafka's default): stop-the-world — every member finishes
    the batch it is processing, commits and gives up all partitions; after `pause_s` (JoinGroup +
    SyncGroup, including the members' wait to notice the rebalance through their heartbeat) the new
    assignment starts. `cooperative` (CooperativeStickyAssignor): only partitions that change owner
    pause, from the old owner's commit for `pause_s`; the others are consumed throughout.
    """

    protocol: Literal["eager", "cooperative"] = "eager"
    pause_s: float = Field(
        default=3.0, ge=0, le=3600,
        description="rebalance pause; default heartbeat.interval.ms (3 s), the time members take to learn of it",
    )  # fmt: skip


class KafkaLagScaling(_Strict):
    """`serving.autoscaling` of a streaming consumer group: KEDA's Apache Kafka scaler.

    The metric is the group's total lag (Σ over partitions of log-end offset − committed offset),
    capped at `partitions × lag_threshold` so that the HPA's AverageValue rule,
    desired = ceil(lag / lag_threshold), never asks for more consumers than partitions (KEDA's
    default, allowIdleConsumers false). Activation (0 ↔ 1) and the HPA underneath are KEDA's
    (capsim/autoscale/keda.py).
    """

    kind: Literal["keda_kafka"] = "keda_kafka"
    min_replicas: int = Field(default=0, ge=0, description="minReplicaCount")
    max_replicas: int = Field(default=100, ge=1, description="maxReplicaCount (the partition cap applies as well)")
    lag_threshold: float = Field(default=10.0, gt=0, description="lagThreshold: target lag per consumer")
    activation_lag_threshold: float = Field(default=0.0, ge=0, description="activationLagThreshold")
    polling_interval_s: float = Field(default=30.0, gt=0)
    cooldown_period_s: float = Field(default=300.0, ge=0)
    hpa_sync_period_s: float = Field(default=15.0, gt=0)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN

    @model_validator(mode="after")
    def _bounds(self) -> KafkaLagScaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self

    def keda_policy(self) -> KedaPolicy:
        """The generic KEDA policy this scaler runs as (its metric is the capped lag)."""
        return KedaPolicy(
            min_replicas=self.min_replicas, max_replicas=self.max_replicas, metric="queue_length",
            target=self.lag_threshold, activation_threshold=self.activation_lag_threshold,
            polling_interval_s=self.polling_interval_s, cooldown_period_s=self.cooldown_period_s,
            hpa_sync_period_s=self.hpa_sync_period_s, tolerance=self.tolerance,
            scale_up=self.scale_up, scale_down=self.scale_down,
        )  # fmt: skip


class StreamingServing(_Strict):
    """Every event of a topic is scored by a consumer group (one model per consumer)."""

    mode: Literal["streaming"]
    partitions: int = Field(ge=1, le=100_000, description="partitions of the topic")
    partitioner: Literal["keyed", "round_robin"] = Field(
        default="keyed",
        description="keyed: each event's key hashes to a uniformly random partition (many distinct keys); "
        "round_robin: event i goes to partition i mod partitions",
    )
    consumers: int = Field(
        ge=1, description="consumers in the group at t = 0 (ready); the initial count under autoscaling"
    )
    assignor: Literal["range", "round_robin"] = Field(
        default="range", description="eager assignor (Kafka's default is range); cooperative uses the sticky one"
    )
    max_poll_records: int = Field(default=500, ge=1, le=1_000_000, description="max.poll.records: records per poll")
    fetch_max_wait_ms: float = Field(
        default=500.0, ge=0, lt=MAX_POLL_INTERVAL_MS, description="fetch.max.wait.ms: broker long-poll wait"
    )
    fetch_min_records: int = Field(
        default=1, ge=1, le=1_000_000,
        description="fetch.min.bytes in records: the broker answers once this many are there",
    )
    rebalance: Rebalance = Rebalance()
    autoscaling: KafkaLagScaling | None = None
    cold_start: ColdStart = ColdStart()

    @model_validator(mode="after")
    def _consistent(self) -> StreamingServing:
        if self.rebalance.protocol == "cooperative" and "assignor" in self.model_fields_set:
            raise ValueError("assignor applies to the eager protocol; cooperative rebalancing uses the sticky assignor")
        scaler = self.autoscaling
        if scaler is not None:
            top = min(scaler.max_replicas, self.partitions)
            if scaler.min_replicas > self.partitions:
                raise ValueError(
                    f"autoscaling.min_replicas ({scaler.min_replicas}) exceeds partitions ({self.partitions}): "
                    "KEDA never runs more consumers than partitions"
                )
            if not scaler.min_replicas <= self.consumers <= max(top, 1):
                raise ValueError(
                    f"consumers ({self.consumers}) is the initial count and must lie within "
                    f"[min_replicas, min(max_replicas, partitions)] = [{scaler.min_replicas}, {top}]"
                )
        return self

    def max_parallelism(self) -> int:
        """The most consumers that can hold partitions at once."""
        reach = self.autoscaling.max_replicas if self.autoscaling is not None else self.consumers
        return min(reach, self.partitions)

    def capacity_rps(self, service: ServiceTimeModel) -> float:
        """Best-case throughput: every active consumer polls full batches back to back."""
        batch = self.max_poll_records
        return self.max_parallelism() * batch / service.mean_s(batch)
