"""The scenario file's schema (pydantic v2), composed from each serving mode's own section.

Unknown keys are rejected everywhere (extra="forbid"), so a typo never silently falls back to a
default. The mode sections come from their packages' spec modules (`capsim.serving.batchjob.schema`,
`capsim.serving.streaming.spec`, `capsim.serving.asyncqueue.spec`, `capsim.serving.llm.spec`), which never
import this package back: the modes' runners see `Scenario` for annotations only. Reading files, `--set` overrides and
the catalogue fill are in `capsim.scenario.load`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_serializer, model_validator

from capsim.autoscale import AutoscalingSpec, ScheduleWindow
from capsim.hardware.mig import MigSlice
from capsim.hardware.model_catalogue import ModelRef
from capsim.hardware.sharing import GpuSharing
from capsim.input_model import InputModel
from capsim.scenario.plan_section import PlanSpec
from capsim.servicetime import ServiceSpec
from capsim.serving.asyncqueue.spec import AsyncServing
from capsim.serving.batchjob.schema import BatchJobServing
from capsim.serving.coldstart import ColdStart, ZeroReplicas
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.frontend import FrontEndSpec
from capsim.serving.graph.spec import GraphServing, rebuild_graph_spec
from capsim.serving.llm.spec import LlmServing
from capsim.serving.spot import SpotCapacity
from capsim.serving.streaming.spec import StreamingServing
from capsim.workload import ArrivalSpec
from capsim.workload.sessions import SessionSpec
from capsim.workload.size import SizeSpec
from capsim.workload.tokens import TokensSpec


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Strict):
    """Where requests come from (and, for LLM serving, how many tokens each brings and asks for)."""

    arrival: ArrivalSpec
    tokens: TokensSpec | None = Field(default=None, description="LLM prompt and output token counts per request")
    session: SessionSpec | None = Field(default=None, description="multi-turn conversations (needs tokens)")
    size: SizeSpec | None = Field(default=None, description="request sizes (default: every request has size 1)")

    @model_validator(mode="after")
    def _tokens_fit_arrival(self) -> Workload:
        if self.tokens is not None and self.tokens.needs_trace() and self.arrival.kind != "trace":
            raise ValueError("tokens: kind trace reads the trace arrival's columns: it needs arrival kind: trace")
        if self.session is not None and self.tokens is None:
            raise ValueError("session: each turn's new input and reply come from workload.tokens: add tokens")
        if self.size is not None and self.size.distribution.kind == "trace" and self.arrival.kind != "trace":
            raise ValueError("size: kind trace reads the trace arrival's columns: it needs arrival kind: trace")
        return self

    def resolve_paths(self, base_dir: Path) -> Workload:
        """A copy whose relative paths (trace, empirical token files) are taken relative to `base_dir`."""
        tokens = None if self.tokens is None else self.tokens.resolve_paths(base_dir)
        size = None if self.size is None else self.size.resolve_paths(base_dir)
        return self.model_copy(update={"arrival": self.arrival.resolve_paths(base_dir), "tokens": tokens, "size": size})


class Hardware(_Strict):
    """What one replica runs on and what it costs. Figures left out are taken from the hardware
    catalogue (`capsim hardware`) when `name` is in it."""

    name: str = Field(min_length=1)
    gpus_per_replica: int = Field(default=1, ge=1, description="GPUs (or instances) per replica: the price scales")
    usd_per_hour: float | None = Field(default=None, ge=0, description="price of one replica per hour (on demand)")
    tdp_w: float | None = Field(default=None, gt=0, description="power of one replica at full load, for energy")
    idle_w: float | None = Field(default=None, ge=0, description="power of an idle replica (default 30% of TDP)")
    usd_per_kwh: float | None = Field(default=None, ge=0, description="electricity price, for the energy bill")
    catalogue: dict[str, Any] | None = Field(
        default=None,
        description="catalogue fields for this hardware, inline: override figures of a catalogue entry "
        "(fp16_tflops: 120, offers: [...]) or, with `kind: gpu|cpu`, define hardware the catalogue lacks",
    )
    mig: MigSlice | None = Field(
        default=None,
        description="run each replica on one MIG slice of this GPU: a profile name (1g.10gb) or "
        "{profile, slices_per_gpu, compute_share, service_scale}; usd_per_hour, tdp_w and idle_w are then "
        "per physical GPU, billed for ceil(replicas / slices_per_gpu) GPUs (docs/model.md, GPU sharing)",
    )
    sharing: GpuSharing | None = Field(
        default=None,
        description="{kind: time_slicing | mps, replicas_per_gpu, alpha}: replicas share one GPU, a batch slowed "
        "by the busy co-runners at its start; priced per physical GPU like mig (docs/model.md, GPU sharing)",
    )

    @model_validator(mode="after")
    def _one_way_to_share(self) -> Hardware:
        if self.mig is not None and self.sharing is not None:
            raise ValueError("give mig or sharing, not both (MPS inside a MIG slice is not modelled)")
        return self


class Batching(_Strict):
    """Dynamic batching as Triton does it (see docs/model.md): `max_wait_ms: 0` is greedy."""

    max_batch_size: int = Field(default=1, ge=1)
    max_wait_ms: float = Field(default=0.0, ge=0)


class Cache(_Strict):
    """A response cache in front of the replicas: hits are answered without the model."""

    hit_ratio: float = Field(default=0.0, ge=0, lt=1)
    latency_ms: float = Field(default=0.0, ge=0)


def _registered_balancer(name: str) -> str:
    if name not in BALANCERS:
        raise ValueError(f"expected one of {', '.join(BALANCERS)}")
    return name


# Any balancer registered in capsim/serving/dataplane/balancers.py (adding one touches only that file).
LoadBalancerKind = Annotated[str, AfterValidator(_registered_balancer)]


class RealtimeServing(_Strict):
    """Request/response serving: a fixed fleet of replicas behind a load balancer."""

    mode: Literal["realtime"] = "realtime"
    replicas: int = Field(ge=0, description="replicas at t = 0 (ready); the initial count under autoscaling")
    instances_per_replica: int = Field(default=1, ge=1, description="model executors sharing one queue")
    batching: Batching = Batching()
    queue_capacity: int | None = Field(
        default=None, ge=0, description="max requests waiting per replica (not counting those in service)"
    )
    timeout_ms: float | None = Field(default=None, gt=0, description="a request still queued this long leaves")
    load_balancer: LoadBalancerKind = "round_robin"
    cache: Cache = Cache()
    overhead_ms: float = Field(
        default=0.0, ge=0, description="fixed time outside the model on every request: network, (de)serialization"
    )
    frontend: FrontEndSpec | None = Field(
        default=None, description="the server's per-request CPU work before the batcher, as a queue that saturates"
    )
    autoscaling: AutoscalingSpec | None = None
    schedule: list[ScheduleWindow] = Field(default_factory=list, description="time-of-day minimum replicas")
    clock_start_h: float = Field(default=0.0, ge=0, lt=24, description="time of day at simulated t = 0")
    cold_start: ColdStart = ColdStart()
    zero_replicas: ZeroReplicas = ZeroReplicas()
    spot: SpotCapacity | None = None

    @model_validator(mode="after")
    def _replicas_within_bounds(self) -> RealtimeServing:
        scaler = self.autoscaling
        if scaler is None and self.replicas < 1:
            raise ValueError("replicas must be >= 1 (only an autoscaler can start from zero)")
        if scaler is not None and not scaler.min_replicas <= self.replicas <= scaler.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) is the initial count and must lie within autoscaling "
                f"[min_replicas, max_replicas] = [{scaler.min_replicas}, {scaler.max_replicas}]"
            )
        if self.schedule and scaler is None:
            raise ValueError("schedule sets minimum replicas for an autoscaler: add an autoscaling section")
        if scaler is not None:
            scaler.refuse_llm_only_metrics()
        return self


rebuild_graph_spec(RealtimeServing=RealtimeServing, Hardware=Hardware)  # a graph's stages are real-time fleets

ServingSpec = Annotated[
    RealtimeServing | BatchJobServing | StreamingServing | AsyncServing | LlmServing | GraphServing,
    Field(discriminator="mode"),
]


class Slo(_Strict):
    """The latency objective: `percentile` % of requests within `latency_ms` (arrival -> response).
    LLM serving may bound time to first token and time per output token instead or as well; a
    request meets the objective when it meets every bound given (goodput)."""

    latency_ms: float = Field(default=math.inf, gt=0, description="end-to-end bound (required but in llm mode)")
    ttft_ms: float | None = Field(default=None, gt=0, description="time-to-first-token bound (llm mode)")
    tpot_ms: float | None = Field(default=None, gt=0, description="time-per-output-token bound (llm mode)")
    percentile: float = Field(default=99.0, gt=0, lt=100)

    def has_latency_bound(self) -> bool:
        """Whether `latency_ms` was given (its default, inf, means no end-to-end bound)."""
        return math.isfinite(self.latency_ms)

    @field_serializer("latency_ms")
    def _no_bound_as_null(self, latency_ms: float) -> float | None:
        # JSON has no inf: a scenario written back (run folders) leaves the unset bound out
        return latency_ms if math.isfinite(latency_ms) else None


class Scenario(_Strict):
    """One what-if question: traffic, model speed, hardware and serving configuration."""

    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0, description="simulated time during which requests arrive")
    warmup_s: float = Field(default=0.0, ge=0, description="discarded from every statistic")
    seed: int = Field(default=0, ge=0)
    workload: Workload | None = Field(default=None, description="required by every mode but batch")
    service: ServiceSpec
    model: ModelRef | None = Field(default=None, description="the LLM served (serving.mode llm): a catalogue name "
                                   "or an inline shape (`capsim hardware --models`)")  # fmt: skip
    hardware: Hardware
    serving: ServingSpec
    slo: Slo | None = None
    plan: PlanSpec | None = Field(default=None, description="the space `capsim plan` searches")

    @model_validator(mode="after")
    def _warmup_inside_run(self) -> Scenario:
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be less than duration_s ({self.duration_s})")
        return self

    @model_validator(mode="after")
    def _workload_fits_mode(self) -> Scenario:
        # A batch job reads a dataset (serving.dataset); every other mode is fed by arrivals.
        if isinstance(self.serving, BatchJobServing):
            if self.workload is not None:
                raise ValueError("workload: a batch job reads serving.dataset, not arrivals: remove workload")
            if self.warmup_s > 0:
                raise ValueError("warmup_s: a batch job is measured whole, from submission: remove warmup_s")
            deadline_s = self.serving.deadline_s
            if deadline_s is not None and deadline_s > self.duration_s:
                raise ValueError(
                    f"duration_s ({self.duration_s}) is the simulated horizon and must reach "
                    f"serving.deadline_s ({deadline_s}), or the deadline could not be judged"
                )
        elif self.workload is None:
            raise ValueError(f"workload: required field is missing (serving.mode {self.serving.mode})")
        return self

    @model_validator(mode="after")
    def _slo_fits_mode(self) -> Scenario:
        slo = self.slo
        if slo is None:
            return self
        if self.serving.mode != "llm":
            if slo.ttft_ms is not None or slo.tpot_ms is not None:
                raise ValueError("slo: ttft_ms and tpot_ms bound LLM token times: they need serving.mode: llm")
            if not slo.has_latency_bound():
                raise ValueError("slo.latency_ms: required field is missing")
        elif slo.ttft_ms is None and slo.tpot_ms is None and not slo.has_latency_bound():
            raise ValueError("slo: give latency_ms, ttft_ms and/or tpot_ms")
        return self

    @model_validator(mode="after")
    def _llm_needs_tokens(self) -> Scenario:
        if self.serving.mode == "llm" and self.workload is not None and self.workload.tokens is None:
            raise ValueError("workload.tokens: required field is missing (serving.mode llm: prompt and output tokens)")
        return self

    @model_validator(mode="after")
    def _sizes_need_realtime(self) -> Scenario:
        if self.workload is not None and self.workload.size is not None and self.serving.mode != "realtime":
            raise ValueError(f"workload.size: request sizes are modelled for serving.mode realtime, not "
                             f"{self.serving.mode}: remove workload.size")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _llm_service_fits_mode(self) -> Scenario:
        # An LLM step-time model times engine steps; the other kinds time batches of requests.
        llm_service = self.service.kind.startswith("llm_")
        llm_mode = self.serving.mode == "llm"
        if llm_service and not llm_mode:
            raise ValueError(f"service.kind {self.service.kind} times LLM engine steps: it needs serving.mode: llm")
        if llm_mode and not llm_service:
            raise ValueError(f"service.kind {self.service.kind} times batches: serving.mode llm needs llm_linear, "
                             "llm_roofline or llm_fitted")  # fmt: skip
        if self.service.kind == "llm_roofline" and self.model is None:
            raise ValueError("model: llm_roofline computes the step from the model's shape: add model: {name: ...}")
        # Sections only the LLM mode reads are refused elsewhere rather than silently ignored.
        if not llm_mode and self.model is not None:
            raise ValueError(f"model: only serving.mode llm serves a model (this is {self.serving.mode}): remove it")
        workload = self.workload
        if not llm_mode and workload is not None and (workload.tokens is not None or workload.session is not None):
            raise ValueError(f"workload: tokens and session describe LLM requests; serving.mode {self.serving.mode} "
                             "does not read them: remove them")  # fmt: skip
        return self

    def resolve_paths(self, base_dir: Path) -> Scenario:
        """A copy whose relative paths (traces, profiles) are taken relative to `base_dir`."""
        workload = None if self.workload is None else self.workload.resolve_paths(base_dir)
        return self.model_copy(update={"workload": workload, "service": self.service.resolve_paths(base_dir)})
