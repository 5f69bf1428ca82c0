"""Replaying a measured load point in the simulator: the same arrival instants, the same server.

The simulated replica gets the measured run's batching settings, instances, queue capacity and
timeout; the arrivals are the instants the load generator actually sent each request (`sent_s`),
replayed exactly through the `trace` arrival process. Request *i* of the simulation (ids follow
arrival order) is request *i* of the measured step sorted by send time, so both sides are summarized
over exactly the same requests.

The fixed per-request overhead (network, HTTP, (de)serialization) is the scenario's `overhead_ms`:
the simulator adds it to every response, outside the batcher. The front end that queues under load
(the reference server's event loop, frontend_fit.py) is the scenario's `serving.frontend`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.budget import ENV_OVERRIDE, estimate_simulation, limits_text, over_budget
from capsim.calibration.runfolder import LoadPoint, require_server
from capsim.engine import simulate
from capsim.errors import CapsimInputError
from capsim.metrics.request_log import COMPLETED
from capsim.scenario import Scenario
from capsim.servicetime import Profile

# After the last arrival the simulator drains what is in flight (see engine.py), so a little past
# the last send is enough for the arrival window.
_TAIL_S = 1e-3


@dataclass
class SimulatedRequests:
    """Per-request results of replaying one load point (all replications stacked), on the run's clock."""

    arrival_s: np.ndarray  # epoch seconds (= the measured send instants)
    start_s: np.ndarray  # batch start, epoch seconds (NaN if never served)
    end_s: np.ndarray  # response, epoch seconds (NaN if in flight at the end)
    batch_size: np.ndarray
    completed: np.ndarray  # bool
    outcome: np.ndarray  # the simulator's outcome codes
    replication: np.ndarray
    replications: int
    utilization: float
    # Whether the replay had a front end before the batcher (then start_s − arrival_s includes it).
    frontend_replayed: bool = False


class ReplayWorkspace:
    """A temporary folder for the files a replay reads (the arrival trace, the profile under test)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="capsim-replay-")
        self.path = Path(self._dir.name)
        self._count = 0

    def fresh(self, suffix: str) -> Path:
        """A new, unique file path in the workspace (trace files are cached by path and mtime)."""
        self._count += 1
        return self.path / f"f{self._count:05d}{suffix}"

    def write_profile(self, profile: Profile) -> Path:
        """Write `profile` where a `service: {kind: profile}` can read it."""
        path = self.fresh(".json")
        profile.write(path)
        return path

    def close(self) -> None:
        """Remove the files."""
        self._dir.cleanup()

    def __enter__(self) -> ReplayWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def arrival_trace(point: LoadPoint, workspace: ReplayWorkspace) -> tuple[Path, float, float]:
    """Write the step's send instants as a trace; returns (path, origin_s, span_s): time 0 of the
    simulation is the first send (`origin_s`, epoch seconds), the last send is at `span_s`."""
    sent_s = point.requests["sent_s"].to_numpy(dtype=float)
    origin_s = float(sent_s[0])
    offsets_s = sent_s - origin_s
    path = workspace.fresh(".parquet")
    pd.DataFrame({"time_s": offsets_s}).to_parquet(path, index=False)
    return path, origin_s, float(offsets_s[-1])


def replay_scenario(
    point: LoadPoint, service: dict[str, Any], overhead_ms: float, trace_path: Path, origin_s: float, span_s: float,
    seed: int = 0, frontend: dict[str, Any] | None = None,
) -> Scenario:
    """The scenario that replays `point` with the given service-time model (a `service:` mapping) and,
    when given, the server's front end (a `serving.frontend` mapping)."""
    server = require_server(point)
    window_lo_s, window_hi_s = point.window_s
    warmup_s = max(window_lo_s - origin_s, 0.0)
    duration_s = max(window_hi_s - origin_s, span_s + _TAIL_S, warmup_s + _TAIL_S)
    serving: dict[str, Any] = {
        "mode": "realtime", "replicas": 1, "instances_per_replica": server.instances,
        "batching": {"max_batch_size": server.max_batch_size, "max_wait_ms": server.max_wait_ms},
        "queue_capacity": server.queue_capacity, "timeout_ms": server.timeout_ms, "overhead_ms": overhead_ms,
    }  # fmt: skip
    if frontend is not None:
        serving["frontend"] = frontend
    data = {
        "name": f"replay {point.label}",
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "seed": seed,
        "workload": {"arrival": {"kind": "trace", "path": str(trace_path), "time_column": "time_s", "time_unit": "s"}},
        "service": service,
        # The replay asks about latency, not money: no price, no energy.
        "hardware": {"name": "replay", "usd_per_hour": 0.0},
        "serving": serving,
    }
    return Scenario.model_validate(data)


def replay(
    point: LoadPoint, service: dict[str, Any], overhead_ms: float, workspace: ReplayWorkspace, *, seed: int = 0,
    replications: int = 1, trace: tuple[Path, float, float] | None = None, frontend: dict[str, Any] | None = None,
) -> SimulatedRequests:
    """Simulate `point` with `service` and `overhead_ms`; per-request results on the run's clock.
    Pass `trace` (from `arrival_trace`) to reuse one trace file across many replays of a point."""
    trace_path, origin_s, span_s = trace or arrival_trace(point, workspace)
    scenario = replay_scenario(point, service, overhead_ms, trace_path, origin_s, span_s, seed, frontend)
    # The measured requests bound the replay, but a damaged manifest's server settings or many
    # --replications can still exceed the machine; the replay's scenario is not the user's, so the
    # refusal names the run folder.
    estimate = estimate_simulation(scenario, replications, keep_requests=True)
    if over_budget(estimate) is not None:
        raise CapsimInputError(f"replaying {point.label} ({estimate.describe()}) exceeds this machine's budget "
                               f"({limits_text()}): use fewer --replications, or {ENV_OVERRIDE}",
                               source=str(point.run_dir))  # fmt: skip
    result = simulate(scenario, replications=replications)
    expected = len(point.requests)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("arrival_s", "start_s", "end_s", "batch_size", "outcome",
                                                         "replication")}  # fmt: skip
    for rep in result.replications:
        cols = rep.requests
        assert cols is not None  # keep_requests is on
        if len(cols["arrival_s"]) != expected:  # the pairing with measured rows depends on it
            raise RuntimeError(f"replay of {point.label}: {len(cols['arrival_s'])} simulated requests, "
                               f"{expected} measured")
        parts["arrival_s"].append(cols["arrival_s"] + origin_s)
        parts["start_s"].append(cols["start_s"] + origin_s)
        parts["end_s"].append(cols["end_s"] + origin_s)
        parts["batch_size"].append(cols["batch_size"])
        parts["outcome"].append(cols["outcome"])
        parts["replication"].append(np.full(expected, rep.replication))
    stacked = {k: np.concatenate(v) for k, v in parts.items()}
    return SimulatedRequests(
        arrival_s=stacked["arrival_s"], start_s=stacked["start_s"], end_s=stacked["end_s"],
        batch_size=stacked["batch_size"], completed=stacked["outcome"] == COMPLETED, outcome=stacked["outcome"],
        replication=stacked["replication"], replications=replications,
        utilization=float(result.summary["utilization"]), frontend_replayed=frontend is not None,
    )
