"""What the compiled data plane runs: every real-time scenario whose settings it implements. It is
the only real-time data plane; a setting added to the schema but not to the kernel is refused with
its name (never silently ignored). `--engine auto|simpy|compiled` is accepted and ignored for one
release (the SimPy data plane is gone); the first run on a machine compiles the loop (~20 s,
cached after)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from capsim.errors import CapsimInputError

if TYPE_CHECKING:  # the scenario schema imports this package's balancer registry
    from capsim.scenario.schema import Scenario

EngineChoice = Literal["auto", "simpy", "compiled"]
ENGINES: tuple[EngineChoice, ...] = ("auto", "simpy", "compiled")

# Settings the compiled kernel implements. A setting outside these that differs from its default
# is refused (naming it), so a mechanism added to the schema is never silently ignored. Keyed by
# the section's path in a real-time scenario.
_SUPPORTED: dict[str, set[str]] = {
    "serving": {
        "mode", "replicas", "instances_per_replica", "batching", "queue_capacity", "timeout_ms",
        "load_balancer", "cache", "overhead_ms", "autoscaling", "schedule", "clock_start_h", "cold_start",
        "zero_replicas", "spot", "frontend",
    },
    "serving.frontend": {"workers", "per_request_ms", "cv", "window_late_quantiles_ms"},
    "serving.batching": {"max_batch_size", "max_wait_ms"},
    "serving.cache": {"hit_ratio", "latency_ms"},
}  # fmt: skip

_MAX_INSTANCES = 1024  # executors per replica the kernel's draw buffers are sized for


def _unsupported_settings(model: BaseModel, where: str) -> str | None:
    supported = _SUPPORTED[where]
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in supported:
            if value != info.get_default(call_default_factory=True):
                return f"{where}.{name}"
        elif isinstance(value, BaseModel) and f"{where}.{name}" in _SUPPORTED:
            inner = _unsupported_settings(value, f"{where}.{name}")
            if inner is not None:
                return inner
    return None


def compiled_unsupported(scenario: Scenario) -> str | None:
    """Why the compiled engine cannot run `scenario` (None when it can)."""
    serving = scenario.serving
    if serving.mode != "realtime":
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


def choose_engine(
    scenario: Scenario, requested: EngineChoice = "auto", source: str = "--engine"
) -> Literal["compiled"]:
    """The data plane that runs the real-time `scenario`: always the compiled one. `requested` (the
    old `--engine` choice) is accepted and ignored for one release. A scenario the data plane
    cannot run is an input error naming why."""
    reason = compiled_unsupported(scenario)
    if reason is not None:
        raise CapsimInputError(f"the simulator cannot run this scenario: {reason}")
    return "compiled"
