"""Back-of-envelope capacity of a scenario, checked before simulating: an unstable configuration
(offered load at or above capacity) still runs, but the user is told why its queues explode."""

from __future__ import annotations

import math
from dataclasses import dataclass

from capsim.scenario import RealtimeServing, Scenario
from capsim.servicetime.scaled import service_on_hardware
from capsim.serving.asyncqueue import AsyncServing
from capsim.serving.graph.spec import GraphServing, stage_scenario, visit_shares
from capsim.serving.llm.spec import LlmServing
from capsim.serving.streaming import StreamingServing


@dataclass(frozen=True)
class CapacityEstimate:
    """Offered load against the fleet's best-case service capacity (full batches)."""

    offered_rps: float
    peak_offered_rps: float
    capacity_rps: float

    @property
    def utilization(self) -> float:
        """rho = offered / capacity (>= 1 means unstable)."""
        return self.offered_rps / self.capacity_rps if self.capacity_rps > 0 else float("inf")


def estimate_capacity(scenario: Scenario) -> CapacityEstimate:
    """The offered load (after cache hits) and the fleet's capacity with full batches."""
    serving = scenario.serving
    if isinstance(serving, (StreamingServing, AsyncServing)) and scenario.workload is not None:
        # Consumers / workers with full polls or batches; no cache in front of them.
        rates = scenario.workload.arrival
        return CapacityEstimate(offered_rps=rates.mean_rate_rps(scenario.duration_s),
                                peak_offered_rps=rates.peak_rate_rps(scenario.duration_s),
                                capacity_rps=serving.capacity_rps(scenario.service))  # fmt: skip
    if isinstance(serving, LlmServing) and scenario.workload is not None:
        from capsim.serving.llm.capacity import llm_capacity_rps  # deferred: it compiles the step time

        rates = scenario.workload.arrival
        return CapacityEstimate(offered_rps=rates.mean_rate_rps(scenario.duration_s),
                                peak_offered_rps=rates.peak_rate_rps(scenario.duration_s),
                                capacity_rps=llm_capacity_rps(scenario))  # fmt: skip
    if isinstance(serving, GraphServing):  # the stage closest to its capacity
        return max(graph_stage_estimates(scenario).values(), key=lambda est: est.utilization)
    assert isinstance(serving, RealtimeServing) and scenario.workload is not None  # a batch job has no offered load
    arrival = scenario.workload.arrival
    miss = 1.0 - serving.cache.hit_ratio
    batch = serving.batching.max_batch_size
    executors = serving.replicas * serving.instances_per_replica
    from capsim.serving.sizes import mean_batch_items  # (imports the profile model)

    items = mean_batch_items(scenario, batch)  # workload.size: a full batch's mean work in size units
    batch_s = service_on_hardware(scenario.service, scenario.hardware).mean_s(batch, items)
    if scenario.hardware.sharing is not None:  # a saturated shared GPU: every co-runner busy
        batch_s *= scenario.hardware.sharing.saturated_slowdown
    # A batch that takes no time (base_ms and per_item_ms both 0) is a fleet without a limit.
    capacity = executors * batch / batch_s if batch_s > 0 else math.inf
    if serving.frontend is not None:  # every request, cache hits aside, passes a replica's front end
        capacity = min(capacity, serving.replicas * serving.frontend.capacity_rps)
    return CapacityEstimate(
        offered_rps=arrival.mean_rate_rps(scenario.duration_s) * miss,
        peak_offered_rps=arrival.peak_rate_rps(scenario.duration_s) * miss,
        capacity_rps=capacity,
    )


def graph_stage_estimates(scenario: Scenario) -> dict[str, CapacityEstimate]:
    """Each stage of a graph against the load it is offered: the graph's arrival rate times the
    stage's expected visits per request (`visit_shares`)."""
    serving = scenario.serving
    assert isinstance(serving, GraphServing)
    estimates = {}
    for name, share in visit_shares(serving).items():
        alone = estimate_capacity(stage_scenario(scenario, name))
        estimates[name] = CapacityEstimate(offered_rps=alone.offered_rps * share,
                                           peak_offered_rps=alone.peak_offered_rps * share,
                                           capacity_rps=alone.capacity_rps)  # fmt: skip
    return estimates


def largest_fleet(scenario: Scenario) -> Scenario:
    """`scenario` with its real-time fleet at the largest size it can reach (an autoscaler's
    `max_replicas`); other scenarios unchanged."""
    serving = scenario.serving
    scaler = getattr(serving, "autoscaling", None)
    if not isinstance(serving, RealtimeServing) or scaler is None:
        return scenario
    return scenario.model_copy(update={"serving": serving.model_copy(update={"replicas": scaler.max_replicas})})


def stability_warnings(scenario: Scenario) -> list[str]:
    """Human-readable warnings when the offered load reaches the capacity, on average or at peak,
    and when the service times are a transfer that the roofline explains poorly."""
    from capsim.serving.sizes import size_extrapolation_warnings  # (imports the profile model)

    return [*_capacity_warnings(scenario), *extrapolation_warnings(scenario), *size_extrapolation_warnings(scenario)]


# Below this share of the measured time, a profile's batches are launch- or host-bound and the
# roofline ratio says little about other hardware (benchmarks/transfer_check.py: 35–70% errors on
# the H100 profiles, whose shares are 0.2–7%).
_MIN_ROOFLINE_SHARE = 0.1


def extrapolation_warnings(scenario: Scenario) -> list[str]:
    """A warning when `service.transfer` moved a profile whose measured times the roofline barely explains."""
    profile = getattr(scenario.service, "profile", None)
    provenance = getattr(profile, "provenance", None) or {}
    share = provenance.get("roofline_share") if provenance.get("extrapolated") else None
    if share is None or share >= _MIN_ROOFLINE_SHARE:
        return []
    return [
        f"service.transfer: the roofline accounts for at most {share:.1%} of the measured batch times "
        f"on {provenance.get('source_hardware')} (launch- or host-bound), so the prediction for "
        f"{provenance.get('target_hardware')} may be far off; measure on the target (capsim profile)"
    ]


def _capacity_warnings(scenario: Scenario) -> list[str]:
    if scenario.serving.mode == "streaming":
        from capsim.serving.streaming.run import stream_warnings

        return stream_warnings(scenario)
    if scenario.serving.mode == "async":
        from capsim.serving.asyncqueue.run import async_warnings

        return async_warnings(scenario)
    est = estimate_capacity(scenario)
    warnings = []
    if est.utilization >= 1.0:
        warnings.append(
            f"unstable: offered load {est.offered_rps:.4g} rps >= capacity {est.capacity_rps:.4g} rps "
            f"(rho = {est.utilization:.3f}); queues grow for as long as the run lasts, so latency "
            "figures depend on the run length"
        )
    elif est.peak_offered_rps > est.capacity_rps:
        warnings.append(
            f"peak arrival rate {est.peak_offered_rps:.4g} rps exceeds capacity {est.capacity_rps:.4g} rps: "
            "queues build up during peaks"
        )
    return warnings
