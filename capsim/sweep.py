"""Sweeps: one scenario run over a grid of field values, to find the cheapest configuration that meets the SLO.

A sweep varies dotted scenario paths (`--vary serving.replicas=2..8`, `--vary
serving.batching.max_wait_ms=0,2,5`) over their cartesian product. Every variant is validated before
any runs, so a bad value fails at once with the variant named; variants then run in parallel worker
processes or on a Dask cluster (capsim.plan.executor), each with the same seed, so that they differ only
by what was varied (common random numbers: the comparison between two variants is much less noisy than
their independent errors). A sweep interrupted by Ctrl-C raises `SweepInterrupted` holding the variants
that finished, marked partial, so that the CLI still writes and shows them.

What a sweep judges, and why:

* the tail it compares is the SLO's own percentile (`tail_latency_ms` at `slo.percentile`: p95 for a
  p95 SLO, p99.9 for a p99.9 one; the summary's next percentile above when it has no such key);
* a variant whose offered load reaches its capacity (`capsim.stability`; an autoscaled fleet at its
  `max_replicas`) is `unstable`: its queues grow for as long as the run lasts, so its figures depend
  on the run length and it is never the chosen variant, whatever its SLO attainment;
* when the load itself is varied (a path under `workload.`), variants at different loads answer
  different questions: the cheapest meeting the SLO is chosen at each load level;
* a varied field whose values leave every resolved scenario the same, labels aside (`name`,
  `hardware.name`), changes nothing but the labels: the sweep warns, naming the field.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capsim.errors import CapsimInputError
from capsim.input_files import parse_value
from capsim.metrics.tally import PERCENTILES
from capsim.scenario import Scenario, load_scenario
from capsim.serving.dataplane.support import EngineChoice, choose_engine

MAX_VARIANTS = 10_000
"""A grid larger than this is almost certainly a typo in a range."""

LOAD_PREFIX = "workload."
"""Varied paths under this prefix change the offered load: the best variant is chosen per level."""

LABEL_FIELDS = ("name", "hardware.name")
"""Resolved-scenario fields that only label a run (what they imply, a catalogue price or TDP, shows
up in other fields)."""
ENERGY_FIELDS = ("hardware.tdp_w", "hardware.idle_w")
"""Resolved-scenario fields that change only the energy estimate, never latency or cost."""


@dataclass(frozen=True)
class Axis:
    """One varied field: its dotted path and the values it takes, in order."""

    path: str
    values: tuple[Any, ...]


def _range_values(text: str, source: str) -> tuple[Any, ...] | None:
    """`a..b` or `a..b:step`, both ends included; None when `text` is not a range."""
    body, _, step_text = text.partition(":")
    start_text, sep, stop_text = body.partition("..")
    if not sep:
        return None
    start, stop = parse_value(start_text, source), parse_value(stop_text, source)
    step = parse_value(step_text, source) if step_text else 1
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, step))
    if not numbers or step <= 0 or stop < start:
        raise CapsimInputError(f"expected a range START..STOP[:STEP] with STOP >= START and STEP > 0, got '{text}'",
                               source=source)  # fmt: skip
    steps = (stop - start) / step  # finite numbers, yet 1e300 / 1e-300 overflows to inf
    if not steps < MAX_VARIANTS:
        raise CapsimInputError(f"the range '{text}' has more than {MAX_VARIANTS} values (at most {MAX_VARIANTS})",
                               source=source)  # fmt: skip
    count = math.floor(steps + 1e-9) + 1
    as_int = all(isinstance(v, int) for v in (start, stop, step))
    return tuple(start + i * step if as_int else round(start + i * step, 12) for i in range(count))


def parse_axis(text: str) -> Axis:
    """`path=v1,v2,...` or `path=START..STOP[:STEP]` → Axis. Values are parsed as YAML scalars, so
    numbers keep their type and `null` clears a field."""
    source = f"--vary {text}"
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path or not raw.strip():
        raise CapsimInputError("expected --vary dotted.path=v1,v2,... or dotted.path=START..STOP[:STEP]",
                               source=f"--vary {text}")  # fmt: skip
    values = _range_values(raw.strip(), source)
    if values is None:
        values = tuple(parse_value(part, source) for part in raw.split(","))
    if len(set(map(repr, values))) != len(values):
        raise CapsimInputError("a value is listed twice", source=source)
    return Axis(path=path, values=values)


def grid(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, the last axis varying fastest: one {path: value} per variant."""
    paths = [a.path for a in axes]
    if len(set(paths)) != len(paths):
        raise CapsimInputError("the same path is varied twice", source="--vary")
    total = math.prod(len(a.values) for a in axes)
    if total > MAX_VARIANTS:
        raise CapsimInputError(f"the grid has {total} variants (at most {MAX_VARIANTS})", source="--vary")
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]


def values_text(values: dict[str, Any]) -> str:
    """`serving.replicas=4, serving.batching.max_wait_ms=2`: varied values as a label."""
    return ", ".join(f"{path}={value}" for path, value in values.items())


def override_text(path: str, value: Any) -> str:
    """`--set` text that sets `path` to exactly `value` (JSON is YAML, so types survive)."""
    return f"{path}={json.dumps(value)}"


@dataclass
class SweepResult:
    """Each variant's varied values, its summary, and the flat row the tables and files show."""

    axes: list[Axis]
    variants: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    variants_total: int | None = None
    """The grid's size when the sweep was interrupted (`partial`); None when every variant ran."""

    @property
    def partial(self) -> bool:
        """Whether the sweep was interrupted: only the variants that finished are here."""
        return self.variants_total is not None

    @property
    def load_axes(self) -> list[Axis]:
        """The varied paths that change the offered load (under `workload.`)."""
        return [axis for axis in self.axes if axis.path.startswith(LOAD_PREFIX)]

    def load_levels(self) -> list[tuple[dict[str, Any], list[int]]]:
        """Each load level ({path: value} of the load axes; {} when the load is not varied) with
        the indices of its variants, in grid order."""
        levels: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for i, variant in enumerate(self.variants):
            level = {axis.path: variant[axis.path] for axis in self.load_axes}
            levels.setdefault(repr(sorted(level.items())), (level, []))[1].append(i)
        return list(levels.values())

    def best_in(self, indices: list[int]) -> int | None:
        """Among `indices`, the stable variant that meets the SLO (a job: its deadline) at the lowest
        cost (ties: the lower tail latency); None if none does."""
        key = self.cost_key
        meeting = [i for i in indices if self.rows[i]["slo_met"] is True and self.rows[i][key] is not None
                   and not self.rows[i]["unstable"]]  # fmt: skip
        if not meeting:
            return None
        return min(meeting, key=lambda i: (self.rows[i][key], self.rows[i]["tail_latency_ms"] or math.inf))

    @property
    def best_indices(self) -> list[int]:
        """The chosen variant of each load level that has one (one at most when the load is not varied)."""
        return [best for _, indices in self.load_levels() if (best := self.best_in(indices)) is not None]

    @property
    def is_job(self) -> bool:
        """Whether the variants are batch jobs (a makespan, a total bill) rather than a serving fleet."""
        return any(row.get("makespan_s") is not None for row in self.rows)

    @property
    def cost_key(self) -> str:
        """What 'cheapest' compares: a fleet's cost per hour at the offered traffic, or a job's whole bill."""
        return "usd" if self.is_job else "usd_per_hour"

    @property
    def best_index(self) -> int | None:
        """The one chosen variant when the load is not varied (`best_in` over all); None when the
        load is varied (see `best_indices`) or when no variant qualifies."""
        return None if self.load_axes else self.best_in(list(range(len(self.rows))))


def tail_key(percentile: float | None) -> str:
    """The latency summary's key for an SLO percentile: its own (`p95`, `p999` for 99.9), else the
    next one above (a conservative reading), else `max`; `p99` when there is no SLO."""
    if percentile is None:
        return "p99"
    above = [(value, key) for key, value in PERCENTILES.items() if value >= percentile - 1e-9]
    return min(above)[1] if above else "max"


def tail_percentile(key: str) -> float:
    """The percentile a latency summary key holds (100 for `max`)."""
    return PERCENTILES.get(key, 100.0)


def summary_row(variant: dict[str, Any], summary: dict[str, Any], rho: float | None = None) -> dict[str, Any]:
    """The figures a capacity review compares, flat, for one variant; `rho` is its offered load over
    its capacity (None when it has no offered load: a batch job)."""
    latency = summary.get("latency_ms") or {}
    slo = summary.get("slo") or {}
    tail = tail_key(slo.get("percentile"))
    unstable = rho is not None and rho >= 1.0
    if rho is not None and not math.isfinite(rho):
        rho = None  # no capacity at all (JSON has no infinity); `unstable` says it
    cost = summary.get("cost") or {}
    replicas = summary.get("replicas") or {}
    return {
        **variant,
        "throughput_rps": summary.get("throughput_rps"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "tail_latency_ms": latency.get(tail),
        "tail_percentile": tail_percentile(tail),
        "rho": rho,
        "unstable": unstable,
        "slo_attainment": slo.get("attainment"),
        "slo_met": slo.get("met"),
        "utilization": summary.get("utilization"),
        "replicas_mean": replicas.get("mean"),
        "cold_starts": replicas.get("cold_starts"),
        "usd_per_hour": cost.get("usd_per_hour"),
        "usd_per_million_requests": cost.get("usd_per_million_requests"),
        "usd": cost.get("usd"),
        "makespan_s": summary.get("makespan_s"),
    }


def load_over_capacity(scenario: Scenario) -> float | None:
    """rho = offered load / capacity of the largest fleet the variant can have (capsim.stability; a
    real-time fleet under an autoscaler at its `max_replicas`); None for a batch job."""
    from capsim.stability import estimate_capacity, largest_fleet

    if scenario.serving.mode == "batch" or scenario.workload is None:
        return None
    return estimate_capacity(largest_fleet(scenario)).utilization


def _without(scenario: Scenario, fields: Sequence[str]) -> str:
    data = scenario.model_dump(mode="json")
    for dotted in fields:
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(data, sort_keys=True, default=str)


def ineffective_axes(
    axes: Sequence[Axis], variants: Sequence[dict[str, Any]], scenarios: Sequence[Scenario]
) -> list[str]:
    """Warnings naming each varied field whose values leave the resolved scenarios the same, labels
    aside (LABEL_FIELDS), wherever the other fields are held: its variants differ only in name; or
    the same but for the energy figures (ENERGY_FIELDS): same latency and cost."""
    labels = [_without(s, LABEL_FIELDS) for s in scenarios]
    energy = [_without(s, (*LABEL_FIELDS, *ENERGY_FIELDS)) for s in scenarios]

    def unchanged_by(axis: Axis, resolved: list[str]) -> bool:
        groups: dict[str, set[str]] = {}
        for variant, text in zip(variants, resolved, strict=True):
            others = repr([(p, v) for p, v in variant.items() if p != axis.path])
            groups.setdefault(others, set()).add(text)
        return all(len(texts) == 1 for texts in groups.values())

    warnings = []
    for axis in axes:
        if len(axis.values) < 2:
            continue
        if unchanged_by(axis, labels):
            what = "every variant's scenario the same (only labels differ): those variants are identical runs"
        elif unchanged_by(axis, energy):
            what = ("every variant's scenario the same but for the energy figures (hardware.tdp_w): latency "
                    "and cost are identical")
        else:
            continue
        warnings.append(f"--vary {axis.path}: its values leave {what}; vary what the value should change "
                        "(a price, a service profile) instead")
    return warnings


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: `result` holds the variants that finished (`result.partial` is true)."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__(f"sweep interrupted after {len(result.rows)} of {result.variants_total} variants")
        self.result = result


@dataclass(frozen=True)
class VariantRun:
    """What a worker process needs to run one variant (picklable: the scenario is a pydantic model)."""

    scenario: Scenario
    label: str
    seed: int | None
    replications: int
    engine: EngineChoice


def run_variant(run: VariantRun) -> dict[str, Any]:
    """One variant's summary (bounded-memory mode); bad input found only as it runs names the variant."""
    from capsim.engine import simulate  # in the worker process

    try:
        return simulate(run.scenario, seed=run.seed, replications=run.replications, keep_requests=False,
                        engine=run.engine).summary  # fmt: skip
    except CapsimInputError as exc:
        raise CapsimInputError(f"{exc.detail} (in the variant {run.label})", source=exc.source,
                               field=exc.field) from None  # fmt: skip


def load_variants(
    scenario_path: Path, overrides: Sequence[str], variants: Sequence[dict[str, Any]], catalogue: Path | None = None
) -> list[Scenario]:
    """Every variant's scenario, validated before anything runs; an error names the variant."""
    scenarios = []
    for variant in variants:
        texts = [override_text(path, value) for path, value in variant.items()]
        try:
            scenarios.append(load_scenario(scenario_path, [*overrides, *texts], catalogue))
        except CapsimInputError as exc:
            where = ", ".join(f"{p}={v!r}" for p, v in variant.items())
            raise CapsimInputError(f"{exc.detail} (in the variant {where})", source=exc.source,
                                   field=exc.field) from None  # fmt: skip
    return scenarios


def run_sweep(
    scenario_path: Path,
    axes: Sequence[Axis],
    overrides: Sequence[str] = (),
    seed: int | None = None,
    replications: int = 1,
    jobs: int | None = None,
    catalogue: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: EngineChoice = "auto",
    force: bool = False,
    cluster: str | None = None,
    on_row: Callable[[int, dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Simulate every variant of the grid (bounded-memory mode) on up to `jobs` processes (default: one
    per CPU), or on a Dask cluster (`cluster`: `local` or a scheduler address; capsim.plan.executor).

    `progress(done, total)` and `on_row(grid index, row)` are called as variants finish. Results come
    back in grid order whatever the order of completion. A sweep over the run budget (capsim.budget) is
    refused unless `force`. Ctrl-C raises `SweepInterrupted` with the variants that finished.
    """
    from capsim.plan.executor import Interrupted, check_cluster, default_jobs, run_variants

    variants = grid(axes)
    scenarios = load_variants(scenario_path, overrides, variants, catalogue)
    warnings = ineffective_axes(axes, variants, scenarios)
    for scenario in scenarios:  # an engine that cannot run a variant is an error before anything runs
        if scenario.serving.mode == "realtime":
            choose_engine(scenario, engine)
    check_cluster(cluster)  # a malformed address is refused before the budget estimate
    jobs = max(1, min(jobs or default_jobs(), len(scenarios)))
    from capsim.budget import enforce, estimate_sweep

    labels = [values_text(variant) for variant in variants]
    enforce(estimate_sweep(scenarios, labels, replications, engine, jobs), force, "this sweep", str(scenario_path))
    runs = [VariantRun(s, label, seed, replications, engine) for s, label in zip(scenarios, labels, strict=True)]
    rows: dict[int, dict[str, Any]] = {}

    def finished(index: int, summary: dict[str, Any]) -> None:
        rows[index] = summary_row(variants[index], summary, load_over_capacity(scenarios[index]))
        if on_row is not None:
            on_row(index, rows[index])
        if progress is not None:
            progress(len(rows), len(runs))

    try:
        summaries = run_variants(run_variant, runs, jobs=jobs, cluster=cluster, on_result=finished)
    except Interrupted as stop:
        done = sorted(i for i in stop.finished if i in rows)  # Ctrl-C may fall between the two
        partial = SweepResult(axes=list(axes), variants=[variants[i] for i in done],
                              summaries=[stop.finished[i] for i in done], rows=[rows[i] for i in done],
                              warnings=warnings, variants_total=len(runs))  # fmt: skip
        raise SweepInterrupted(partial) from None
    return SweepResult(axes=list(axes), variants=variants, summaries=summaries,
                       rows=[rows[i] for i in range(len(runs))], warnings=warnings)  # fmt: skip
