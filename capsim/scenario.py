"""Scenario files: the pydantic v2 schema, YAML loading, and `--set dotted.path=value` overrides.

Unknown keys are rejected everywhere (extra="forbid"), so a typo never silently falls back to a
default. Errors name the file, the dotted field path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

from capsim.autoscale import AutoscalingSpec, ScheduleWindow
from capsim.errors import CapsimInputError
from capsim.input_files import parse_value, read_yaml_file
from capsim.input_model import InputModel, input_error
from capsim.scenario_catalogue import scenario_catalogue, transfer_service
from capsim.servicetime import ServiceSpec
from capsim.serving.asyncqueue import AsyncServing
from capsim.serving.batchjob import BatchJobServing
from capsim.serving.coldstart import ColdStart, ZeroReplicas
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.frontend import FrontEndSpec
from capsim.serving.spot import SpotCapacity
from capsim.serving.streaming import StreamingServing
from capsim.workload import ArrivalSpec

if TYPE_CHECKING:
    from capsim.hardware.catalogue import Catalogue
    from capsim.hardware.spec import HardwareSpec


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Strict):
    """Where requests come from."""

    arrival: ArrivalSpec


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
        return self


ServingSpec = Annotated[
    RealtimeServing | BatchJobServing | StreamingServing | AsyncServing, Field(discriminator="mode")
]


class Slo(_Strict):
    """The latency objective: `percentile` % of requests within `latency_ms`."""

    latency_ms: float = Field(gt=0)
    percentile: float = Field(default=99.0, gt=0, lt=100)


class Scenario(_Strict):
    """One what-if question: traffic, model speed, hardware and serving configuration."""

    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0, description="simulated time during which requests arrive")
    warmup_s: float = Field(default=0.0, ge=0, description="discarded from every statistic")
    seed: int = Field(default=0, ge=0)
    workload: Workload | None = Field(default=None, description="required by every mode but batch")
    service: ServiceSpec
    hardware: Hardware
    serving: ServingSpec
    slo: Slo | None = None

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

    def resolve_paths(self, base_dir: Path) -> Scenario:
        """A copy whose relative paths (traces, profiles) are taken relative to `base_dir`."""
        workload = self.workload
        if workload is not None:
            workload = workload.model_copy(update={"arrival": workload.arrival.resolve_paths(base_dir)})
        return self.model_copy(update={"workload": workload, "service": self.service.resolve_paths(base_dir)})


def validate_scenario(data: Any, source: str, catalogue_path: str | Path | None = None) -> Scenario:
    """Validate a parsed scenario mapping; raise CapsimInputError naming the first bad field.
    Hardware and spot figures the file leaves out are filled in from the hardware catalogue: the
    shipped one, merged with `catalogue_path` (`--catalogue FILE`) and the scenario's inline
    `hardware.catalogue` fields."""
    if not isinstance(data, dict):
        raise CapsimInputError("expected a mapping of scenario fields at the top level", source=source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise input_error(exc, data, source, fields_doc="docs/scenarios.md") from None
    try:
        return _with_catalogue_figures(scenario, catalogue_path)
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, source=exc.source or source, field=exc.field) from None


def _with_catalogue_figures(scenario: Scenario, catalogue_path: str | Path | None = None) -> Scenario:
    hardware = scenario.hardware
    spot: SpotCapacity | None = getattr(scenario.serving, "spot", None)
    needs_price = hardware.usd_per_hour is None
    needs_transfer = getattr(scenario.service, "transfer", None) is not None
    needs_spot = spot is not None and (
        spot.usd_per_hour is None or not spot.rate_known or "notice_s" not in spot.model_fields_set
    )
    wants_catalogue = hardware.catalogue is not None or catalogue_path is not None
    if not (needs_price or hardware.tdp_w is None or needs_transfer or needs_spot or wants_catalogue):
        return scenario
    from capsim.hardware import replica_usd_per_hour, resolve_hardware

    catalogue = scenario_catalogue(hardware, catalogue_path)
    try:
        spec = resolve_hardware(hardware.name, None, catalogue)
    except CapsimInputError as exc:
        if needs_price or needs_transfer:
            raise  # unknown name and nothing to go on: the message suggests the nearest names
        if spot is not None and (spot.usd_per_hour is None or not spot.rate_known):
            raise CapsimInputError(
                f"{exc.detail}; serving.spot takes the figures it leaves out from the catalogue, so give "
                "serving.spot.usd_per_hour and an interruption rate, or describe it in hardware.catalogue",
                field=exc.field,
            ) from None
        return scenario  # a custom name with its own figures: nothing to fill in
    update: dict[str, Any] = {}
    if needs_price:
        update["usd_per_hour"] = replica_usd_per_hour(spec, hardware.gpus_per_replica)
    if hardware.tdp_w is None and spec.tdp_w.value is not None:
        update["tdp_w"] = spec.tdp_w.value * hardware.gpus_per_replica
        if hardware.idle_w is None and spec.idle_power_w.value is not None:
            update["idle_w"] = spec.idle_power_w.value * hardware.gpus_per_replica
    result = scenario.model_copy(update={"hardware": hardware.model_copy(update=update)})
    if needs_spot:
        assert spot is not None
        filled = _spot_from_catalogue(spot, spec, catalogue, hardware.gpus_per_replica)
        serving = scenario.serving.model_copy(update={"spot": filled})
        result = result.model_copy(update={"serving": serving})
    # A profile transfer happens in load_scenario, once relative paths are resolved.
    return result


def _spot_from_catalogue(
    spot: SpotCapacity, spec: HardwareSpec, catalogue: Catalogue, gpus_per_replica: int
) -> SpotCapacity:
    """`serving.spot` with the figures it leaves out taken from the catalogue entry and its provider."""
    from capsim.hardware import replica_usd_per_hour
    from capsim.hardware.spot import reclaimed_fraction_per_month, spot_notice_s, spot_provider

    def named(exc: CapsimInputError, field: str) -> CapsimInputError:
        return CapsimInputError(f"{exc.detail}; or set {field} in the scenario", field=field)

    if spot.provider is not None and spot.provider.lower() not in catalogue.providers:
        known = ", ".join(sorted(catalogue.providers)) or "none"
        raise CapsimInputError(f"unknown provider '{spot.provider}' (known: {known})", field="serving.spot.provider")
    update: dict[str, Any] = {}
    if spot.usd_per_hour is None:
        try:
            update["usd_per_hour"] = replica_usd_per_hour(spec, gpus_per_replica, "spot")
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.usd_per_hour") from None
    if not spot.rate_known:
        try:
            figure = reclaimed_fraction_per_month(spec, catalogue, spot.provider)
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.monthly_interruption_probability") from None
        update["monthly_interruption_probability"] = figure.value
    if "notice_s" not in spot.model_fields_set:
        try:
            update["notice_s"] = spot_notice_s(spot.provider or spot_provider(spec), catalogue)
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.notice_s") from None
    return spot.model_copy(update=update)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a", "b", "c"], value parsed as YAML, so numbers and booleans keep their type;
    see `capsim.input_files.parse_value`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CapsimInputError(f"expected --set dotted.path=value, got '{text}'", source="--set")
    try:
        value = parse_value(raw, "--set")
    except CapsimInputError as exc:
        field = f"{key.strip()}.{exc.field}".replace(".[", "[") if exc.field else key.strip()
        raise CapsimInputError(exc.detail, source="--set", field=field) from None
    return [p for p in key.strip().split(".")], value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `data` with each `dotted.path=value` set (intermediate mappings are created)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise CapsimInputError(f"'{where}' is a value, not a section", source="--set", field=where)
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with one-line errors (missing, too large, syntax, duplicate keys, non-finite
    numbers, nesting: `capsim.input_files`)."""
    return read_yaml_file(path)


def load_scenario(
    path: str | Path, overrides: list[str] | None = None, catalogue_path: str | Path | None = None
) -> Scenario:
    """Read, override and validate a scenario file; relative paths in it are resolved against its folder.
    `catalogue_path` (`--catalogue FILE`) extends or overrides the shipped hardware catalogue."""
    path = Path(path)
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise CapsimInputError("expected a mapping of scenario fields at the top level", source=str(path))
        data = apply_overrides(data, overrides)
    scenario = validate_scenario(data, str(path), catalogue_path).resolve_paths(path.parent)
    try:
        scenario = transfer_service(scenario, catalogue_path)
        if scenario.serving.mode == "batch":
            from capsim.serving.batchjob.checks import check_batch_job

            check_batch_job(scenario)
        return scenario
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, source=exc.source or str(path), field=exc.field) from None
