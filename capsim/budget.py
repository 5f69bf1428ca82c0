"""The run budget: what a run will cost in events, memory and time, estimated from the scenario
before anything runs, and the refusal when it would exceed the machine.

Nothing here allocates in proportion to a field's value: every figure is arithmetic on the
scenario's numbers (a trace's rate is read from its already loaded offsets).

The model, per replication unless said otherwise:

- **requests** R = the arrival process's mean rate × `duration_s` (a batch job: its items).
- **events** ≈ R × replications (an arrival, its batch's start and end: folded into the measured
  per-request speed below) + control-plane ticks (`duration_s` / the autoscaler's period, plus the
  ~1,200 samples and progress steps) × replications.
- **memory** (peak bytes) is the sum of:
  - the request log when every request is kept: R × replications × `LOG_BYTES_PER_REQUEST`;
  - the backlog, in either mode: when the mean offered load exceeds the largest fleet's capacity,
    requests pile up in the queues, each held until served: (offered − capacity) rps × `duration_s`
    requests, at most the queue capacities or the requests of one `timeout_ms`, ×
    `QUEUED_BYTES_PER_REQUEST` (a burst above a capacity that the mean stays under builds a
    temporary backlog this does not count: its length is the arrival process's, not a field's);
  - the compiled engine's per-batch-size arrays: a service-time table of `max_batch_size` + 1 rows
    (× the profile's quantile levels) and each executor's batch of `max_batch_size` request ids;
  - the fleet: peak replicas (workers, consumers) × `REPLICA_BYTES` plus their executors and
    front-end workers, and a batch job's or topic's partitions × `PARTITION_BYTES`.
- **time** = R × replications / the engine's measured requests per second + control events /
  `CONTROL_EVENTS_PER_S`.

A run is refused (exit 2, one line naming the field that drives it) when its memory exceeds
`MEMORY_SHARE` of the machine's memory (physical RAM, or less where a cgroup or RLIMIT_AS says so)
or its time exceeds `MAX_RUN_S`; `--force` runs it anyway. `CAPSIM_MAX_MEMORY_BYTES` and
`CAPSIM_MAX_RUN_S` override the two limits (for tests, or a bigger or more patient machine).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from capsim.errors import CapsimInputError
from capsim.scenario import Scenario

# -- measured constants ------------------------------------------------------------------------
# Measured on the project's 2-core development VM (x86-64, shared with other work) with
# scenarios/quickstart.yaml scaled up (`--set workload.arrival.rate_rps=20000 --set serving.replicas=20`,
# 1M against 4M requests, the difference divided by 3M so start-up cancels; peak RSS from
# /usr/bin/time -v). Faster machines finish sooner: the time limit is an order-of-magnitude guard.

REQUESTS_PER_S: dict[str, float] = {"compiled": 1.0e6, "simpy": 3.0e5}
"""Requests simulated per second, with the request log (compiled 1.5M/s measured, 3.2M/s without
the log; SimPy 370k/s with, 460k/s without), rounded down for a loaded machine."""

LOG_BYTES_PER_REQUEST = 110
"""Peak bytes per request while every request is kept (103 measured with both engines: the log's
34 bytes of columns, grown by doubling, and the copy the result keeps)."""

QUEUED_BYTES_PER_REQUEST = 150
"""Bytes per request waiting in a queue, in either mode (an overloaded run: 120 measured with the
compiled engine, 140 with SimPy): its log row stays until it is served, plus its queue entry."""

REPLICA_BYTES: dict[str, float] = {"simpy": 600_000, "compiled": 150_000}
"""Peak bytes per replica (worker, consumer): quickstart with 2,000 to 8,000 replicas over 10 s took
225-390 KB each with SimPy, growing with the count (20,000 passed 10.7 GB), and ~110 KB with the
compiled engine: its random streams' draw buffers, processes and level series."""

REPLICA_S: dict[str, float] = {"simpy": 0.008, "compiled": 0.003}
"""Seconds per replica of a run, beside its requests (the same runs: 8,000 SimPy replicas took 60 s
for 3,000 requests; 4,000 compiled ones 11 s)."""

EXECUTOR_BYTES = 2_000
"""Bytes per model executor beyond the first of a replica (a SimPy process and its draw slots)."""

PARTITION_BYTES = 1_000
"""Bytes per partition of a batch job's dataset or a streaming topic (a few Python objects)."""

CONTROL_EVENTS_PER_S = 5.0e4
"""Control-plane ticks (autoscaler syncs, samples) per second in SimPy: flash-crowd-kpa.yaml with
`tick_s` 0.01 instead of 2 (240,000 more ticks) took 4.5 s more, 53k ticks/s."""

BATCH_JOB_BATCHES_PER_S = 1.0e5
"""A batch job's batches per second (each is a read, a compute and perhaps a checkpoint event)."""

MEMORY_SHARE = 0.5
"""A run may use at most this share of the machine's memory (the rest is the system, the user's
other work and the result's own copies when written)."""

MAX_RUN_S = 6 * 3600.0
"""A run expected to take longer is refused unless forced: hours of simulated events are almost
always a mistaken rate or duration, and a real day-long scenario takes under a minute."""

_PAGE_CAP_BYTES = 1 << 62  # "no limit" from cgroups and rlimits


@dataclass(frozen=True)
class Part:
    """One term of the estimate: how much, and which setting drives it (as people write it)."""

    what: str
    amount: float
    driver: str
    advice: str


@dataclass(frozen=True)
class RunEstimate:
    """What a run is expected to cost (see the module docstring for the model)."""

    requests: float  # per replication (a batch job: items)
    replications: int
    events: float  # over all replications
    time_s: float
    memory: list[Part] = field(default_factory=list)  # bytes, largest first
    time: list[Part] = field(default_factory=list)  # seconds, largest first
    unit: str = "requests"  # what `requests` counts ("items" for a batch job)

    @property
    def memory_bytes(self) -> float:
        """Expected peak memory of the run's data (not the ~200 MB of the interpreter and its libraries)."""
        return sum(p.amount for p in self.memory)

    def describe(self) -> str:
        """One line for `capsim check`: requests, events, memory and time."""
        return (f"{self.requests:,.0f} {self.unit} per replication, ~{self.events:.2g} events, "
                f"~{_bytes_text(self.memory_bytes)} of memory, ~{_time_text(self.time_s)} on this machine class")


def machine_memory_bytes() -> float:
    """The memory this process may use: physical RAM, or a cgroup's or RLIMIT_AS's limit when lower."""
    limits = [_PAGE_CAP_BYTES]
    with contextlib.suppress(ValueError, OSError, AttributeError):  # (not POSIX: no figure)
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(soft)
    return float(min(limits))


def memory_limit_bytes() -> float:
    """`MEMORY_SHARE` of the machine's memory, or `CAPSIM_MAX_MEMORY_BYTES`."""
    return _env_float("CAPSIM_MAX_MEMORY_BYTES") or MEMORY_SHARE * machine_memory_bytes()


def limits_text() -> str:
    """The two limits in words: `12.6 GB of memory and 6 h`."""
    return f"{_bytes_text(memory_limit_bytes())} of memory and {_time_text(time_limit_s())}"


def time_limit_s() -> float:
    """`MAX_RUN_S`, or `CAPSIM_MAX_RUN_S`."""
    return _env_float("CAPSIM_MAX_RUN_S") or MAX_RUN_S


def _env_float(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CapsimInputError(f"expected a number, got '{text}'", source=name) from None
    if not (math.isfinite(value) and value > 0):
        raise CapsimInputError(f"expected a number > 0, got '{text}'", source=name)
    return value


# -- the estimate ------------------------------------------------------------------------------


def estimate_run(
    scenario: Scenario,
    replications: int = 1,
    keep_requests: bool = True,
    engine: Literal["simpy", "compiled"] = "simpy",
) -> RunEstimate:
    """The expected requests, events, peak memory and time of simulating `scenario` (see the module
    docstring); `engine` is the one that will run it (only the real-time mode has two)."""
    if scenario.serving.mode == "batch":
        return _batch_job_estimate(scenario, replications)
    requests = expected_requests(scenario)
    arrivals = _arrival_driver(scenario)
    memory: list[Part] = []
    time: list[Part] = []
    if keep_requests:
        memory.append(Part("request log", requests * replications * LOG_BYTES_PER_REQUEST, arrivals,
                           "lower it, or pass --no-request-log (histograms only)"))  # fmt: skip
    memory.extend(_backlog_parts(scenario))
    memory.extend(_fleet_parts(scenario, engine))
    rate = REQUESTS_PER_S["compiled" if engine == "compiled" else "simpy"]
    time.append(Part("requests", requests * replications / rate, arrivals, "lower it or shorten duration_s"))
    replicas, replicas_driver = _replicas(scenario)
    time.append(Part("replicas", replicas * REPLICA_S[engine] * replications, replicas_driver, "lower it"))
    ticks, tick_driver = _control_ticks(scenario)
    time.append(Part("control-plane ticks", ticks * replications / CONTROL_EVENTS_PER_S, tick_driver,
                     "lengthen the period or shorten duration_s"))  # fmt: skip
    events = (requests + ticks) * replications
    return _estimate(requests, replications, events, memory, time)


def _estimate(
    requests: float, replications: int, events: float, memory: list[Part], time: list[Part], unit: str = "requests"
) -> RunEstimate:
    memory = sorted(memory, key=lambda p: -p.amount)
    time = sorted(time, key=lambda p: -p.amount)
    return RunEstimate(requests=requests, replications=replications, events=events,
                       time_s=sum(p.amount for p in time), memory=memory, time=time, unit=unit)  # fmt: skip


def expected_requests(scenario: Scenario) -> float:
    """Requests one replication is offered (0 for a batch job, whose records are per batch)."""
    if scenario.workload is None:
        return 0.0
    return scenario.workload.arrival.mean_rate_rps(scenario.duration_s) * scenario.duration_s


def _arrival_driver(scenario: Scenario) -> str:
    """`workload.arrival.rate_rps=1e+09 over duration_s=600`: the settings that make the requests."""
    return f"{_arrival_setting(scenario)} over duration_s={scenario.duration_s:g}"


def _arrival_setting(scenario: Scenario) -> str:
    """`workload.arrival.rate_rps=1e+09`, or the arrival's mean rate when no single field sets it."""
    assert scenario.workload is not None
    arrival = scenario.workload.arrival
    for name in ("rate_rps", "peak_rps", "on_rate_rps", "rate_scale"):
        value = getattr(arrival, name, None)
        if isinstance(value, (int, float)):
            return f"workload.arrival.{name}={value:g}"
    return f"workload.arrival (mean {arrival.mean_rate_rps(scenario.duration_s):.3g} rps)"


def _backlog_parts(scenario: Scenario) -> list[Part]:
    """Requests piled up in the queues of an overloaded real-time fleet, held until served."""
    from capsim.scenario import RealtimeServing

    serving = scenario.serving
    if not isinstance(serving, RealtimeServing) or scenario.workload is None:
        return []
    from capsim.stability import estimate_capacity, largest_fleet

    est = estimate_capacity(largest_fleet(scenario))  # an autoscaled fleet can grow to drain its queues
    excess_rps = est.offered_rps - est.capacity_rps
    if excess_rps <= 0:
        return []
    queued = excess_rps * scenario.duration_s
    if serving.queue_capacity is not None:
        queued = min(queued, float(serving.queue_capacity) * max(_peak_replicas(scenario), 1))
    if serving.timeout_ms is not None:
        queued = min(queued, est.offered_rps * serving.timeout_ms / 1000.0)
    fleet, _ = _replicas(scenario)
    driver = (f"{_arrival_setting(scenario)} (offered {est.offered_rps:.3g} rps) over the capacity of {fleet} "
              f"replicas ({est.capacity_rps:.3g} rps) for duration_s={scenario.duration_s:g}")
    return [Part("backlog", queued * QUEUED_BYTES_PER_REQUEST, driver,
                 "add replicas, lower the rate, or bound the queue (serving.queue_capacity or serving.timeout_ms)")]


def _peak_replicas(scenario: Scenario) -> int:
    serving = scenario.serving
    count = int(getattr(serving, "replicas", 0) or getattr(serving, "workers", 0) or getattr(serving, "consumers", 0))
    scaler = getattr(serving, "autoscaling", None)
    if scaler is not None:
        count = max(count, int(scaler.max_replicas))
    for window in getattr(serving, "schedule", None) or []:
        count = max(count, int(window.min_replicas))
    return count


def _replicas(scenario: Scenario) -> tuple[int, str]:
    """The fleet's peak size and the field that sets it (`serving.autoscaling.max_replicas=64`)."""
    serving = scenario.serving
    if getattr(serving, "autoscaling", None) is not None:
        name = "serving.autoscaling.max_replicas"
    else:
        name = next(f"serving.{n}" for n in ("replicas", "workers", "consumers", "mode") if hasattr(serving, n))
    count = _peak_replicas(scenario)
    return count, f"{name}={count}"


def _fleet_parts(scenario: Scenario, engine: str) -> list[Part]:
    from capsim.scenario import RealtimeServing

    serving = scenario.serving
    replicas, replicas_driver = _replicas(scenario)
    parts = [Part("replicas", replicas * REPLICA_BYTES[engine], replicas_driver, "lower it")]
    partitions = getattr(serving, "partitions", None)
    if isinstance(partitions, int):
        parts.append(Part("partitions", partitions * PARTITION_BYTES, f"serving.partitions={partitions}", "lower it"))
    if not isinstance(serving, RealtimeServing):
        return parts
    instances = serving.instances_per_replica
    parts.append(Part("executors", replicas * (instances - 1) * EXECUTOR_BYTES,
                      f"serving.instances_per_replica={instances} on {replicas} replicas", "lower it"))  # fmt: skip
    if serving.frontend is not None:  # each replica keeps when each of its front-end workers is next free
        workers = serving.frontend.workers
        parts.append(Part("front-end workers", replicas * workers * 8.0,
                          f"serving.frontend.workers={workers} on {replicas} replicas", "lower it"))  # fmt: skip
    if engine == "compiled":
        batch = serving.batching.max_batch_size
        levels = len(getattr(getattr(scenario.service, "profile", None), "quantile_levels", ()) or ())
        slots = 1 << max(3, math.ceil(math.log2(max(replicas, 1))))  # the plane's slots double from 8
        table_bytes = (batch + 1) * 8.0 * (2 + levels)
        batch_ids_bytes = float(slots) * instances * batch * 8
        parts.append(Part("per-batch-size arrays", table_bytes + batch_ids_bytes,
                          f"serving.batching.max_batch_size={batch} (compiled engine)",
                          "lower it to the largest batch that can form"))  # fmt: skip
    return parts


def _control_ticks(scenario: Scenario) -> tuple[float, str]:
    """Control-plane events of one replication: the autoscaler's syncs, plus samples and progress."""
    scaler = getattr(scenario.serving, "autoscaling", None)
    periods = {name: float(getattr(scaler, name)) for name in _TICK_PERIODS
               if isinstance(getattr(scaler, name, None), (int, float))}  # fmt: skip
    fixed = 1_200.0  # ~1,000 samples and 200 progress steps (capsim.engine)
    if not periods:
        return fixed, f"duration_s={scenario.duration_s:g}"
    name, period_s = min(periods.items(), key=lambda item: item[1])
    ticks = scenario.duration_s / period_s + fixed
    return ticks, f"serving.autoscaling.{name}={period_s:g} over duration_s={scenario.duration_s:g}"


# The autoscalers' tick periods (HPA's sync, KPA's tick, KEDA's polling, Ray Serve's control loop):
# each tick is a control-plane event, so a tiny period over a long run is many events.
_TICK_PERIODS = ("sync_period_s", "tick_s", "polling_interval_s", "hpa_sync_period_s", "control_loop_interval_s")


def _batch_job_estimate(scenario: Scenario, replications: int) -> RunEstimate:
    serving = scenario.serving
    dataset = serving.dataset  # type: ignore[union-attr]
    items = float(dataset.total_items)
    batch_size = serving.batch_size  # type: ignore[union-attr]
    batches = items / batch_size
    driver = f"serving.dataset.items={items:.0f} in batches of serving.batch_size={batch_size}"
    time = [Part("batches", batches * replications / BATCH_JOB_BATCHES_PER_S, driver, "lower it")]
    memory = _fleet_parts(scenario, "simpy")
    partitions = len(dataset.partition_sizes) if dataset.partition_sizes is not None else min(
        dataset.partitions or serving.workers, dataset.items or 0)  # type: ignore[union-attr]  # fmt: skip
    memory.append(Part("partitions", float(partitions) * PARTITION_BYTES,
                       f"serving.dataset.partitions={partitions}", "lower it"))  # fmt: skip
    return _estimate(items, replications, batches * replications, memory, time, unit="items")


def estimate_simulation(
    scenario: Scenario, replications: int, keep_requests: bool, engine: str = "auto"
) -> RunEstimate:
    """`estimate_run` with the engine `--engine` (auto, simpy, compiled) resolves to for `scenario`."""
    from capsim.serving.dataplane.support import choose_engine

    chosen = choose_engine(scenario, engine) if scenario.serving.mode == "realtime" else "simpy"  # type: ignore[arg-type]
    return estimate_run(scenario, replications, keep_requests, chosen)


def estimate_solve(scenario: Scenario, replications: int) -> RunEstimate:
    """`--solve` on a batch job: up to 2 + log2(max − min + 1) bisection probes per hardware candidate,
    each a run of the job; memory that of the largest probe (`serving.search.max_workers` workers)."""
    serving = scenario.serving
    search = getattr(serving, "search", None)
    low, high = (search.min_workers, search.max_workers) if search is not None else (1, 256)
    probes = 2 + math.ceil(math.log2(max(high - low + 1, 1)))
    candidates = max(len(search.hardware) if search is not None else 0, 1)
    largest = scenario.model_copy(update={"serving": serving.model_copy(update={"workers": max(high, 1)})})
    one = estimate_run(largest, replications * probes * candidates)
    return replace(one, memory=estimate_run(largest, replications).memory)


def estimate_sweep(
    scenarios: list[Scenario], labels: list[str], replications: int, engine: str, jobs: int
) -> RunEstimate:
    """A sweep's variants on `jobs` processes (bounded-memory mode): their times add up and are shared
    by the processes; the memory is the largest variant's, once per process."""
    estimates = [estimate_simulation(s, replications, False, engine) for s in scenarios]
    largest = max(range(len(estimates)), key=lambda i: estimates[i].memory_bytes)
    slowest = max(range(len(estimates)), key=lambda i: estimates[i].time_s)
    parallel = max(1, min(jobs, len(estimates)))
    where = f"variant {labels[largest]}, {parallel} at once"
    memory = [replace(p, amount=p.amount * parallel, driver=f"{p.driver} ({where})") for p in estimates[largest].memory]
    total_s = sum(e.time_s for e in estimates) / parallel
    top = estimates[slowest].time[0]
    time = [replace(top, amount=total_s, driver=f"{top.driver} (variant {labels[slowest]}, {len(estimates)} variants)")]
    requests = max(e.requests for e in estimates)
    return _estimate(requests, replications, sum(e.events for e in estimates), memory, time, estimates[0].unit)


# -- the refusal -------------------------------------------------------------------------------


ENV_OVERRIDE = "raise CAPSIM_MAX_MEMORY_BYTES / CAPSIM_MAX_RUN_S"
"""How to run past the budget where a command has no --force (validate's and calibrate's replays)."""


def over_budget(estimate: RunEstimate, what: str = "this run", source: str | None = None) -> CapsimInputError | None:
    """The one-line error naming the driving setting when `estimate` exceeds the machine's memory
    budget or the time limit (None when it fits)."""
    memory_cap = memory_limit_bytes()
    time_cap = time_limit_s()
    if estimate.memory_bytes > memory_cap:
        top = estimate.memory[0]
        return CapsimInputError(
            f"{what} ({_total_text(estimate)}, ~{_time_text(estimate.time_s)}) would need "
            f"~{_bytes_text(estimate.memory_bytes)} of memory (budget {_bytes_text(memory_cap)}), "
            f"most of it the {top.what}: {top.driver} is "
            f"~{_bytes_text(top.amount)}{_requests_note(estimate, top)}; {top.advice}, or pass --force",
            source=source, field=_field_of(top.driver),
        )
    if estimate.time_s > time_cap:
        top = estimate.time[0]
        return CapsimInputError(
            f"{what} would take ~{_time_text(estimate.time_s)} (budget {_time_text(time_cap)}): {top.driver} is "
            f"{_count_text(estimate, top)}; {top.advice}, or pass --force",
            source=source, field=_field_of(top.driver),
        )
    return None


def enforce(estimate: RunEstimate, force: bool = False, what: str = "this run", source: str | None = None) -> None:
    """Raise `over_budget`'s error unless the run fits or `force` (the user's --force) is set."""
    error = None if force else over_budget(estimate, what, source)
    if error is not None:
        raise error


def _total_text(estimate: RunEstimate) -> str:
    return f"{estimate.requests * estimate.replications:.2g} {estimate.unit}"


def _requests_note(estimate: RunEstimate, part: Part) -> str:
    if part.what != "request log":
        return ""
    return f" for {estimate.requests * estimate.replications:.2g} requests"


def _count_text(estimate: RunEstimate, part: Part) -> str:
    if part.what == "requests":
        reps = f" × {estimate.replications} replications" if estimate.replications > 1 else ""
        return f"{estimate.requests:.2g} requests{reps} (~{_time_text(part.amount)})"
    if part.what == "batches":
        runs = f" over {estimate.replications} runs" if estimate.replications > 1 else ""
        return f"{estimate.events:.2g} batches{runs} (~{_time_text(part.amount)})"
    return f"~{_time_text(part.amount)} of {part.what}"


def _field_of(driver: str) -> str | None:
    """The dotted field a driver text starts with (None for a derived quantity like offered load)."""
    head = driver.split("=", 1)[0].split(" ", 1)[0]
    return None if "=" not in driver.split(" ", 1)[0] else head


def _bytes_text(n: float) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def _time_text(seconds: float) -> str:
    if seconds >= 86_400 * 365:
        return f"{seconds / (86_400 * 365):.3g} years"
    if seconds >= 86_400:
        return f"{seconds / 86_400:.3g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.2g} s"
