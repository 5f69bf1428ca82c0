"""Which engine runs a scenario: the SimPy engine runs everything; the compiled engine runs the
real-time mode without the mechanisms listed below, and is chosen by `--engine auto` when a run is
long enough for it to pay (its first run on a machine also compiles it, ~20 s, cached after)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from capsim.errors import CapsimInputError
from capsim.scenario import Batching, Cache, RealtimeServing, Scenario
from capsim.serving.frontend import FrontEndSpec

EngineChoice = Literal["auto", "simpy", "compiled"]
ENGINES: tuple[EngineChoice, ...] = ("auto", "simpy", "compiled")

AUTO_MIN_REQUESTS = 1_000_000
"""`auto` takes the compiled engine from this many expected arrivals per replication: below it, the
SimPy engine finishes in about the time numba takes to load."""

# Settings the compiled kernel implements. A setting outside these that differs from its default
# sends the scenario to the SimPy engine, so a mechanism added to the SimPy replica is never
# silently ignored by the compiled one.
_SUPPORTED: dict[type[BaseModel], set[str]] = {
    RealtimeServing: {
        "mode", "replicas", "instances_per_replica", "batching", "queue_capacity", "timeout_ms",
        "load_balancer", "cache", "overhead_ms", "autoscaling", "schedule", "clock_start_h", "cold_start",
        "zero_replicas", "spot", "frontend",
    },
    FrontEndSpec: {"workers", "per_request_ms", "cv"},
    Batching: {"max_batch_size", "max_wait_ms"},
    Cache: {"hit_ratio", "latency_ms"},
}  # fmt: skip

_MAX_INSTANCES = 1024  # executors per replica the kernel's draw buffers are sized for


def _unsupported_settings(model: BaseModel, where: str) -> str | None:
    supported = _SUPPORTED[type(model)]
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in supported:
            if value != info.get_default(call_default_factory=True):
                return f"{where}.{name}"
        elif isinstance(value, BaseModel) and type(value) in _SUPPORTED:
            inner = _unsupported_settings(value, f"{where}.{name}")
            if inner is not None:
                return inner
    return None


def compiled_unsupported(scenario: Scenario) -> str | None:
    """Why the compiled engine cannot run `scenario` (None when it can)."""
    serving = scenario.serving
    if not isinstance(serving, RealtimeServing):
        return f"serving.mode: {serving.mode} (the compiled engine runs realtime serving)"
    setting = _unsupported_settings(serving, "serving")
    if setting is not None:
        return f"{setting} (not modelled by the compiled engine)"
    if serving.instances_per_replica > _MAX_INSTANCES:
        return f"serving.instances_per_replica above {_MAX_INSTANCES}"
    # Whether a compiled form exists does not depend on the batch size: ask for the smallest table
    # (the full one has max_batch_size + 1 rows, and `capsim check` must allocate nothing that large).
    if scenario.service.batch_time_table(1) is None:
        return f"service.kind: {getattr(scenario.service, 'kind', '?')} has no compiled form"
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    return None


def compiled_engine_is_cached() -> bool:
    """Whether numba's cache holds the compiled event loop (else the next compiled run compiles it,
    ~10 s; numba may still recompile if its version or the CPU changed)."""
    spec = importlib.util.find_spec("capsim.serving.dataplane.kernel")
    if spec is None or spec.origin is None:
        return False
    cache = Path(spec.origin).parent / "__pycache__"
    return any(cache.glob("kernel.advance-*.nbi"))


def expected_arrivals(scenario: Scenario) -> float:
    """Arrivals a replication expects (mean rate × duration)."""
    if scenario.workload is None:
        return 0.0
    return scenario.workload.arrival.mean_rate_rps(scenario.duration_s) * scenario.duration_s


def choose_engine(
    scenario: Scenario, requested: EngineChoice, source: str = "--engine"
) -> Literal["simpy", "compiled"]:
    """The engine that runs `scenario`. Asking for `compiled` where it cannot run is an input error
    (naming why); `auto` picks it for supported scenarios of at least AUTO_MIN_REQUESTS arrivals."""
    if requested == "simpy":
        return "simpy"
    reason = compiled_unsupported(scenario)
    if requested == "compiled":
        if reason is not None:
            raise CapsimInputError(f"{source}: the compiled engine cannot run this scenario: {reason}; use simpy")
        return "compiled"
    if reason is None and expected_arrivals(scenario) >= AUTO_MIN_REQUESTS:
        return "compiled"
    return "simpy"
