"""One replication of a graph of models: its stages advanced in lock-step, and its summary.

Every `sync_s` of simulated time up to t, in topological order, each stage is fed the requests
routed to it that arrive before t, advanced to t (its own SimPy control plane and compiled data
plane, autoscaler included), and harvested: the requests it finished before t go on along its
edges (capsim/serving/graph/routing.py). This is exact, not an approximation: a request arrives at
a stage no earlier than it left the stage before (edges add no time, answers carry the stage's
overhead), so when a stage is advanced to t every arrival before t has been fed — its senders come
first in the order and were advanced to t just before — and a stage never handles an event before
one of its arrivals that was still to come. `sync_s` only sets how much is held between stages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from capsim.hardware.cost import usd_per_million
from capsim.metrics.request_log import Columns
from capsim.metrics.summary import clean_json, replication_summary
from capsim.metrics.tally import RequestTally
from capsim.rng import RandomStreams
from capsim.serving.graph.rollout import at_start, entry_ended_for, schedule_cutover
from capsim.serving.graph.routing import Router, split_entry
from capsim.serving.graph.spec import GraphServing, stage_scenario, topological_order
from capsim.serving.graph.stage import FOLD_ROWS, Stage, Visits

if TYPE_CHECKING:
    from capsim.engine import ReplicationResult
    from capsim.scenario import Scenario

_SYNC_STEPS = 1000  # lock-step times per run (any number gives the same result; fewer hold more)
_MIN_SYNC_S = 1.0
# What each stage's block in the summary keeps of its own real-time summary.
_STAGE_KEYS = ("requests", "throughput_rps", "latency_ms", "queue_wait_ms", "batch_size", "utilization", "replicas",
               "cost", "levels")  # fmt: skip


class _StageStreams(RandomStreams):
    """A stage's named streams: its own ("stage/<name>/service/replica-0", ...), so adding a stage
    changes no other stage's random numbers."""

    def __init__(self, streams: RandomStreams, name: str) -> None:
        super().__init__(streams.seed, streams.replication)
        self.prefix = f"stage/{name}/"

    def stream(self, name: str) -> np.random.Generator:
        return super().stream(self.prefix + name)


class _EntryArrivals:
    """The graph's arrivals (drawn lazily in chunks), handed out cut at each lock-step time."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self._chunks = chunks
        self._held = np.zeros(0)
        self._exhausted = False

    def before(self, t_s: float) -> np.ndarray | None:
        """The arrivals before `t_s` not handed out yet; None once there are none left at all."""
        while not self._exhausted and (self._held.size == 0 or self._held[-1] < t_s):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._exhausted = True
            else:
                self._held = np.concatenate([self._held, chunk])
        if self._exhausted and self._held.size == 0:
            return None
        cut = int(np.searchsorted(self._held, t_s, side="left"))
        out, self._held = self._held[:cut], self._held[cut:]
        return out


class _EndToEnd:
    """The graph's request statistics: every request, and by version (entry stage)."""

    def __init__(self, scenario: Scenario, versions: list[str], exact: bool) -> None:
        slo_s = scenario.slo.latency_ms / 1000.0 if scenario.slo else None
        self.all = RequestTally(scenario.warmup_s, slo_s, exact)
        self.by_version = [RequestTally(scenario.warmup_s, slo_s, exact) for _ in versions]
        self.arrived = np.zeros(len(versions), dtype=np.int64)
        self.warmup_s = scenario.warmup_s
        self.keep = exact  # with the request log: one row per graph request
        self._arrivals: list[tuple[np.ndarray, np.ndarray]] = []
        self._rows: list[Columns] = []

    def arrive(self, arrival_s: np.ndarray, version: np.ndarray) -> None:
        """Count arrivals (after warm-up) by version."""
        if self.keep:
            self._arrivals.append((arrival_s, version))
        kept = version[arrival_s >= self.warmup_s]
        self.arrived += np.bincount(kept, minlength=self.arrived.size)

    def end(self, visits: Visits, outcome: np.ndarray) -> None:
        """Fold in requests whose path ended (`visits.time_s`: the end)."""
        if not len(visits):
            return
        cols: Columns = {"arrival_s": visits.arrival_s, "start_s": visits.start_s, "end_s": visits.time_s,
                         "outcome": outcome, "batch_size": visits.batch_size,
                         "cache_hit": np.isnan(visits.start_s) & (outcome == 1)}  # fmt: skip
        self.all.add(cols, 0.0)
        if self.keep:
            self._rows.append({**cols, "gid": visits.gid})
        for v, tally in enumerate(self.by_version):
            mine = visits.version == v
            if mine.any():
                tally.add({name: col[mine] for name, col in cols.items()}, 0.0)

    def requests(self) -> Columns | None:
        """With the request log: every graph request in arrival order — its arrival and end, its
        outcome (in flight if it never ended), its version, and its first stage's batch start and
        size (`start_s`, `batch_size`)."""
        if not self.keep:
            return None
        arrival_s = np.concatenate([a for a, _ in self._arrivals]) if self._arrivals else np.zeros(0)
        n = arrival_s.size
        cols: Columns = {"arrival_s": arrival_s, "start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan),
                         "outcome": np.zeros(n, dtype=np.int8), "batch_size": np.zeros(n, dtype=np.int32),
                         "version": np.concatenate([v for _, v in self._arrivals]) if self._arrivals else
                         np.zeros(0, dtype=np.int64)}  # fmt: skip
        for part in self._rows:
            for name in ("start_s", "end_s", "outcome", "batch_size"):
                cols[name][part["gid"]] = part[name]
        return cols

    def close(self) -> None:
        """End of run: what arrived and did not end is in flight."""
        for tally, arrived in ((self.all, int(self.arrived.sum())), *zip(self.by_version, self.arrived.tolist(),
                                                                         strict=True)):  # fmt: skip
            tally.in_flight += arrived - tally.arrived
            tally.arrived = arrived


def run_graph(scenario: Scenario, seed: int, replication: int, ticks: np.ndarray,
              keep_requests: bool) -> ReplicationResult:  # fmt: skip
    """One replication of `scenario` (serving.mode graph); its summary has the end-to-end figures,
    `stages` (each stage's own real-time summary) and `by_version` (per entry stage)."""
    from capsim.engine import _MIN_DRAIN_S, ReplicationResult  # the real-time run's drain rule

    graph = scenario.serving
    assert isinstance(graph, GraphServing) and scenario.workload is not None
    streams = RandomStreams(seed, replication)
    order = topological_order(graph)
    drain_limit_s = scenario.duration_s + max(scenario.duration_s, _MIN_DRAIN_S)
    stages = {name: Stage(at_start(graph, name, stage_scenario(scenario, name)), _StageStreams(streams, name), ticks,
                          drain_limit_s + 1.0, exact=keep_requests) for name in order}  # fmt: skip
    schedule_cutover(graph, stages)
    router = Router(graph, streams)
    split = graph.entry_split()
    versions = list(split.split)
    e2e = _EndToEnd(scenario, versions, keep_requests)
    senders: dict[str, set[str]] = {name: set() for name in order}
    for name, spec in graph.stages.items():
        for target in (*(spec.next.targets() if spec.next else ()), *spec.shadow):
            senders[target].add(name)
        if spec.next is not None and spec.next.fan_out is not None and spec.next.then is not None:
            senders[spec.next.then].update(spec.next.fan_out)
    last_branch = {max(spec.next.fan_out, key=order.index): name for name, spec in graph.stages.items()
                   if spec.next is not None and spec.next.fan_out is not None}  # fmt: skip
    entry = _EntryArrivals(scenario.workload.arrival.chunks(streams.stream("arrivals"), scenario.duration_s))
    split_rng, users_rng = streams.stream("graph/split"), streams.stream("graph/users")
    sync_s = max(_MIN_SYNC_S, scenario.duration_s / _SYNC_STEPS)
    next_gid, entry_open, t_s = 0, True, 0.0
    while True:
        t_s = min(t_s + sync_s, drain_limit_s)
        if entry_open:
            times = entry.before(t_s)
            if times is None:
                entry_open = False
            elif times.size:
                version = split_entry(split, times, split_rng, users_rng)
                e2e.arrive(times, version)
                gid = np.arange(next_gid, next_gid + times.size, dtype=np.int64)
                next_gid += times.size
                unserved = np.full(times.size, np.nan)
                arrivals = Visits(gid, times, version, unserved, np.zeros(times.size, np.int64), times)
                for v, name in enumerate(versions):
                    router.inbox[name].append(arrivals.take(version == v))
        for name in order:
            stage = stages[name]
            visits = router.due(name, t_s)
            stage.feed(visits)
            for shadow in graph.stages[name].shadow:
                router.inbox[shadow].append(visits)
            takes_entry = name in versions and entry_open and not entry_ended_for(graph, name, t_s)
            upstream_done = all(stages[s].drained for s in senders[name]) and not takes_entry
            if upstream_done and router.idle_into(name):
                stage.close()
            stage.advance_to(t_s)
            router.route(name, stage.harvest())
            if name in last_branch:
                router.settle_join(last_branch[name], t_s)
        if router.ended.rows >= FOLD_ROWS:  # folded in blocks: a fold costs about as much for few rows
            e2e.end(*router.ended.pop())
        if t_s >= drain_limit_s or all(stage.drained for stage in stages.values()):
            break
    results = {name: stages[name].finish(seed, replication) for name in order}
    e2e.end(*router.ended.pop())
    e2e.close()
    return ReplicationResult(replication, _summary(scenario, seed, e2e, versions, results), e2e.requests(),
                             _timeseries(results), {})  # fmt: skip


def _timeseries(results: dict[str, ReplicationResult]) -> dict[str, np.ndarray]:
    """The stages' time series summed (replicas, executors, queues), sampled at the same times."""
    first = next(iter(results.values())).timeseries
    series = {"time_s": first["time_s"]}
    for key in ("replicas", "billed_replicas", "serving_executors", "busy_executors", "queue_length", "arrival_rps"):
        if key in first:
            series[key] = np.sum([r.timeseries[key] for r in results.values()], axis=0)
    series["arrival_rps"] = first.get("arrival_rps", np.zeros_like(first["time_s"]))
    with np.errstate(invalid="ignore", divide="ignore"):
        series["utilization"] = np.where(series["serving_executors"] > 0,
                                         series["busy_executors"] / series["serving_executors"], 0.0)  # fmt: skip
    return series


def _summary(scenario: Scenario, seed: int, e2e: _EndToEnd, versions: list[str],
             results: dict[str, ReplicationResult]) -> dict[str, Any]:  # fmt: skip
    """End-to-end figures, with the stages' cost, replicas and levels summed."""
    window_s = scenario.duration_s - scenario.warmup_s
    stage_sums = [r.summary for r in results.values()]

    def total(block: str, key: str) -> float:
        return float(sum((s[block].get(key) or 0.0) for s in stage_sums))

    busy = total("levels", "busy_executors_mean")
    serving = sum(s["levels"]["busy_executors_mean"] / s["utilization"] for s in stage_sums if s["utilization"])
    levels = {"utilization": busy / serving if serving else 0.0, "queue_length": total("levels", "queue_length_mean"),
              "in_service": total("levels", "in_service_mean"), "busy_executors": busy}  # fmt: skip
    replicas = {key: total("replicas", key) for key in ("mean", "min", "max", "billed_mean", "cold_starts")}
    cost = {key: total("cost", key) for key in ("usd", "on_demand_usd", "spot_usd")}
    slo = (scenario.slo.latency_ms, scenario.slo.percentile) if scenario.slo else None

    def summarize(tally: RequestTally, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        return replication_summary(name=name, seed=seed, duration_s=scenario.duration_s, window_s=window_s,
                                   tally=tally, levels=levels, replicas=replicas, cost_usd=cost, slo=slo,
                                   extra=extra)  # fmt: skip

    by_version = {}
    for name, tally in zip(versions, e2e.by_version, strict=True):
        block = summarize(tally, name, {})
        by_version[name] = {key: block[key] for key in ("requests", "throughput_rps", "latency_ms", "slo")}
        by_version[name]["share"] = tally.arrived / max(e2e.all.arrived, 1)
    stages = {}
    for name, result in results.items():
        s = result.summary
        stages[name] = {key: s[key] for key in _STAGE_KEYS}
        stages[name]["hardware"] = result_hardware(scenario, name)
    from capsim.stability import stability_warnings  # deferred: it reads the scenario package

    extra = {"stages": stages, "by_version": by_version, "engine": "compiled", "warnings": stability_warnings(scenario)}
    summary = summarize(e2e.all, scenario.name, extra)
    summary["cost"]["usd_per_million_requests"] = usd_per_million(cost["usd"], e2e.all.completed)
    return clean_json(summary)


def result_hardware(scenario: Scenario, name: str) -> str:
    """The hardware a stage runs on (its name)."""
    graph = scenario.serving
    assert isinstance(graph, GraphServing)
    hardware = graph.stages[name].hardware
    return (hardware or scenario.hardware).name
