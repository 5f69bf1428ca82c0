"""The search: the smallest safe fleet on every candidate line, cheapest lines first, pruning the rest.

Along one line (hardware × varied values × traffic level; `capsim.plan.space`) a larger fleet of the
same hardware has no worse latency and costs more, so "meets the SLO" is monotone in the replica
count and the smallest meeting count is found by galloping then bisection (`CountSearch`), from the
smallest count the headroom and redundancy rules allow. Across lines nothing is monotone (a batching
window, a hardware), so lines are expanded cheapest lower bound first (`Candidate.cost_lower_bound`),
and a line whose lower bound exceeds the cheapest answer already found at its traffic level is
pruned without another simulation; a fixed fleet's bisection is also capped at the count that
answer's cost allows.

Each configuration starts with `initial_replications` and doubles them (up to `max_replications`)
while the confidence rule cannot decide (`capsim.plan.rules.meets_slo`); an undecided configuration
counts as not meeting, so the search moves to larger fleets rather than trusting a coin toss.

Work goes out in rounds: every round takes up to `width` lines (the worker count) and runs the
replications they need on one `capsim.plan.executor.VariantRunner`, held open for the whole search
(a process pool or Dask cluster starts once, not once per round); cached replications are read back
instead (`capsim.plan.cache`). The answer does not depend on `width` (pruning removes only
lines that cannot beat or tie the answer); the work done does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from capsim.metrics.summary import combine_replications
from capsim.plan.cache import ResultCache, variant_key
from capsim.plan.executor import VariantRunner
from capsim.plan.rules import SafetyRules, SloVerdict, llm_headroom, meets_slo
from capsim.plan.space import Candidate
from capsim.scenario import Scenario
from capsim.stability import estimate_capacity, largest_fleet

_EPS = 1e-9


class CountSearch:
    """The smallest count in [low, high] that meets, assuming meeting is monotone in the count:
    probe `low`, then gallop (double) until a count meets, then bisect between the last count that
    failed and the first that met."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.failed_up_to = low - 1  # every count up to this one does not meet
        self.met_at: int | None = None  # the smallest count known to meet

    @property
    def finished(self) -> bool:
        """Whether nothing is left to simulate: every count below the smallest known to meet (and
        within `high`) is known to fail. The answer is `met_at` (None: nothing up to `high` meets)."""
        upper = self.high if self.met_at is None else min(self.high, self.met_at - 1)
        return self.failed_up_to >= upper

    def lowest_open(self) -> int:
        """The smallest count that may still be the answer."""
        return self.failed_up_to + 1

    def next_count(self) -> int | None:
        """The count to simulate next; None when finished."""
        if self.finished:
            return None
        if self.met_at is not None:
            return min(self.high, (self.failed_up_to + 1 + self.met_at) // 2)
        if self.failed_up_to < self.low:
            return self.low
        return min(self.high, max(self.failed_up_to + 1, 2 * self.failed_up_to))

    def record(self, count: int, met: bool) -> None:
        """The outcome of simulating `count`. An outcome that contradicts monotonicity (noise: a count
        meets below one that failed, or fails above one that met) keeps what was known first."""
        if met and count > self.failed_up_to:
            self.met_at = count if self.met_at is None else min(self.met_at, count)
        elif not met and (self.met_at is None or count < self.met_at):
            self.failed_up_to = max(self.failed_up_to, count)

    def cap(self, high: int) -> None:
        """Nothing above `high` can matter any more (a cheaper answer exists elsewhere)."""
        self.high = min(self.high, high)


def simulate_replication(task: tuple[Scenario, int, int]) -> dict[str, Any]:
    """One replication (`first_replication` = the task's index) of one variant, bounded-memory mode:
    the executor's unit of work (module level, so that worker processes can unpickle it)."""
    from capsim.engine import simulate

    scenario, seed, replication = task
    result = simulate(scenario, seed=seed, replications=1, keep_requests=False, first_replication=replication)
    return result.summary


@dataclass
class Probe:
    """One configuration (a line at one count) and what its replications said."""

    candidate: Candidate
    count: int
    scenario: Scenario
    key: str
    rho_peak: float
    wanted: int
    replications: list[dict[str, Any]] = field(default_factory=list)
    verdict: SloVerdict | None = None
    simulated: int = 0  # replications this run simulated (not read from the cache)
    requests: int = 0  # requests arrived in those

    @property
    def summary(self) -> dict[str, Any] | None:
        """The replications combined (counts summed, figures averaged, `ci95` half-widths)."""
        return combine_replications(self.replications) if self.replications else None


@dataclass
class Line:
    """The search state of one candidate line."""

    candidate: Candidate
    search: CountSearch
    probes: dict[int, Probe] = field(default_factory=dict)
    pending: Probe | None = None
    pruned: bool = False
    infeasible: str | None = None  # why the line has nothing to search (headroom beyond the bound)

    def next_count(self, rules: SafetyRules) -> int | None:
        """The count to simulate next (the N+1 count once the smallest meeting count is known)."""
        if self.pruned or self.infeasible:
            return None
        count = self.search.next_count()
        if count is not None:
            return count
        met = self.search.met_at
        if rules.n_plus_one and met is not None and met + 1 not in self.probes:
            return met + 1
        return None


@dataclass
class SearchOutcome:
    """Every line with its probes; how much was simulated and how much read back."""

    lines: list[Line]
    simulations: int
    cached_simulations: int
    requests_simulated: int


class Planner:
    """Runs the search over `candidates` (see the module docstring). `exhaustive=True` simulates every
    count of every line instead (no galloping, bisection or pruning): the reference a benchmark
    compares the search with."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        slo: dict[str, Any],
        rules: SafetyRules,
        seed: int,
        cache: ResultCache,
        *,
        jobs: int = 1,
        cluster: str | None = None,
        exhaustive: bool = False,
        on_simulation: Callable[[], None] | None = None,
    ) -> None:
        self.slo, self.rules, self.seed, self.cache = slo, rules, seed, cache
        self.jobs, self.cluster, self.exhaustive = jobs, cluster, exhaustive
        self.on_simulation = on_simulation
        self.simulations = self.cached = self.requests = 0
        self.lines = [self._line(c) for c in candidates]
        self._runner: VariantRunner | None = None

    def _line(self, candidate: Candidate) -> Line:
        low = max(candidate.floor, candidate.headroom_count(self.rules))
        line = Line(candidate, CountSearch(low, candidate.high))
        if low > candidate.high:
            line.infeasible = (f"headroom: {low} replicas keep the peak within {self.rules.max_utilization:.0%} "
                               f"of capacity, above the bound {candidate.high} (--max-replicas)")  # fmt: skip
        return line

    # --- what the search knows -------------------------------------------------------------------------

    def eligible(self, line: Line, probe: Probe) -> bool:
        """Whether a probe may be the answer: it meets the SLO and, with N+1, so does one fewer."""
        if probe.verdict is None or probe.verdict.status != "meets" or probe.rho_peak >= 1.0:
            return False
        if probe.rho_peak > self.rules.max_utilization + _EPS or llm_headroom(probe.replications) is not None:
            return False
        met = line.search.met_at
        return not self.rules.n_plus_one or (met is not None and probe.count - 1 >= met)

    def best_cost(self, level: int) -> float:
        """The cheapest eligible cost per hour found so far at a traffic level (inf: none yet)."""
        costs = [cost_per_hour(p) for line in self.lines if line.candidate.level == level
                 for p in line.probes.values() if self.eligible(line, p)]  # fmt: skip
        return min((c for c in costs if c is not None), default=math.inf)

    def lower_bound(self, line: Line) -> float:
        """No configuration still open on the line costs less per hour than this."""
        return line.candidate.cost_lower_bound(line.search.lowest_open(), self.rules)

    # --- rounds ------------------------------------------------------------------------------------------

    def _prune(self) -> None:
        for line in self.lines:
            if self.exhaustive or line.pruned or line.infeasible or line.pending is not None:
                continue
            best = self.best_cost(line.candidate.level)
            if not math.isfinite(best):
                continue
            if line.next_count(self.rules) is not None and self.lower_bound(line) > best * (1 + _EPS):
                line.pruned = True
            elif line.candidate.fleet == "fixed":
                price = line.candidate.usd_per_hour_per_replica()
                extra = 1 if self.rules.n_plus_one else 0
                if price > 0:
                    line.search.cap(math.floor(best / price * (1 + _EPS)) - extra)

    def _open_probe(self, line: Line) -> Probe | None:
        if line.pending is not None:
            return line.pending
        if self.exhaustive:
            top = line.search.high + (1 if self.rules.n_plus_one else 0)
            count = next((c for c in range(line.search.low, top + 1) if c not in line.probes), None)
            count = None if line.infeasible else count
        else:
            count = line.next_count(self.rules)
        if count is None:
            return None
        scenario = line.candidate.at(count)
        rho = estimate_capacity(largest_fleet(scenario))
        rho_peak = rho.peak_offered_rps / rho.capacity_rps if rho.capacity_rps > 0 else math.inf
        probe = Probe(line.candidate, count, scenario, variant_key(scenario, self.seed), rho_peak,
                      wanted=self.rules.initial_replications)  # fmt: skip
        line.pending = probe
        return probe

    def run(self) -> SearchOutcome:
        """Search until every line is finished or pruned, on workers started once for the whole search."""
        with VariantRunner(jobs=max(1, self.jobs), cluster=self.cluster) as runner:
            self._runner = runner
            try:
                self._rounds()
            finally:
                self._runner = None
        return SearchOutcome(self.lines, self.simulations, self.cached, self.requests)

    def _rounds(self) -> None:
        while True:
            self._prune()
            ready = [(line, probe) for line in self.lines if (probe := self._open_probe(line)) is not None]
            if not ready:
                break
            ready.sort(key=lambda item: (self.lower_bound(item[0]), item[0].candidate.index))
            # A cluster has no fixed width: give it every ready line at once.
            width = len(ready) if self.cluster is not None else max(1, self.jobs)
            self._simulate([probe for _, probe in ready[:width]])
            for line, probe in ready[:width]:
                self._settle(line, probe)

    def _simulate(self, probes: Sequence[Probe]) -> None:
        """Fill every probe up to its wanted replications: from the cache, else simulated."""
        tasks: list[tuple[Scenario, int, int]] = []
        owners: list[Probe] = []
        for probe in probes:
            if probe.rho_peak >= 1.0:
                continue  # unstable: never chosen, its figures would only measure the run's length
            for r in range(len(probe.replications), probe.wanted):
                cached = self.cache.get(probe.key, r)
                if cached is not None:
                    probe.replications.append(cached)
                    self.cached += 1
                else:
                    tasks.append((probe.scenario, self.seed, r))
                    owners.append(probe)
        if not tasks:
            return

        def finished(index: int, summary: dict[str, Any]) -> None:
            probe = owners[index]
            self.cache.put(probe.key, tasks[index][2], summary)
            probe.simulated += 1
            probe.requests += int(summary["requests"]["arrived"])
            self.simulations += 1
            self.requests += int(summary["requests"]["arrived"])
            if self.on_simulation is not None:
                self.on_simulation()

        assert self._runner is not None, "_simulate runs inside run()"
        results = self._runner.run(simulate_replication, tasks, finished)
        for probe, (_, _, r), summary in zip(owners, tasks, results, strict=True):
            assert len(probe.replications) == r  # tasks of one probe are listed in replication order
            probe.replications.append(summary)

    def _settle(self, line: Line, probe: Probe) -> None:
        """Judge a probe; ask for more replications while undecided; else record it on the line."""
        if probe.rho_peak >= 1.0:
            probe.verdict = SloVerdict("fails", None, None, float(self.slo.get("percentile") or 99.0),
                                       f"unstable: peak load is {probe.rho_peak:.2f} of capacity")  # fmt: skip
        else:
            summary = probe.summary
            assert summary is not None
            probe.verdict = meets_slo(summary, self.slo)
            if probe.verdict.status == "undecided" and probe.wanted < self.rules.max_replications:
                probe.wanted = self.rules.more_replications(probe.wanted)
                return  # stays pending: the next round adds replications
        line.pending = None
        line.probes[probe.count] = probe
        met = probe.verdict.status == "meets" and probe.rho_peak < 1.0 and llm_headroom(probe.replications) is None
        line.search.record(probe.count, met)


def cost_per_hour(probe: Probe) -> float | None:
    """A probe's cost per hour: the run's billed replica-hours at the hardware's price."""
    summary = probe.summary
    if summary is None:
        return None
    value = (summary.get("cost") or {}).get("usd_per_hour")
    return float(value) if value is not None else None
