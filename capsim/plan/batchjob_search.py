"""The inverse question of a batch job: the fewest workers that meet `deadline_s` (bisection over
simulated runs), and the cheapest hardware among `serving.search.hardware` at its fewest workers.

A worker count "meets" the deadline when every replication finishes by it (the same seeds at every
count: common random numbers). Bisection assumes that more workers never finish later; the answer
is always checked on both sides: it meets the deadline and, unless it is `min_workers`, one worker
fewer was simulated and missed it. Makespan can rise with workers in corner cases (a partition count
that stops dividing evenly, spot interruptions drawn differently), which is why the probes are
reported, not just the answer.

It lives in `capsim.plan`, above the batch-job model (`capsim.serving.batchjob`) and the scenario
loader, which builds each candidate's scenario (`capsim.scenario.load.candidate_scenario`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capsim.errors import CapsimInputError
from capsim.scenario.load import candidate_scenario
from capsim.serving.batchjob.checks import batch_serving
from capsim.serving.batchjob.run import run_batch_job

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario


@dataclass(frozen=True)
class Probe:
    """One simulated worker count: whether every replication met the deadline, and what it cost."""

    workers: int
    met: bool
    makespan_s: float | None  # mean over replications (None if one did not finish)
    usd: float


@dataclass
class WorkersAnswer:
    """The fewest workers meeting the deadline on one hardware (None if even `max_workers` misses)."""

    hardware: str
    workers: int | None
    probes: list[Probe] = field(default_factory=list)
    summary: dict[str, Any] | None = None  # the run at the answer

    @property
    def usd(self) -> float | None:
        """Cost of the job at the answer."""
        return None if self.summary is None else float(self.summary["cost"]["usd"])

    def as_dict(self) -> dict[str, Any]:
        """JSON form for `--json`."""
        return {
            "hardware": self.hardware,
            "workers": self.workers,
            "usd": self.usd,
            "makespan_s": None if self.summary is None else self.summary["makespan_s"],
            "probes": [vars(p) for p in sorted(self.probes, key=lambda p: p.workers)],
        }


def _label(scenario: Scenario) -> str:
    serving = batch_serving(scenario)
    spot = serving.spot
    return scenario.hardware.name + (f" ({spot.fraction:.0%} spot)" if spot is not None and spot.fraction > 0 else "")


def fewest_workers(
    scenario: Scenario, seed: int | None = None, replications: int = 1, *, on_probe: Callable[[], None] | None = None
) -> WorkersAnswer:
    """Bisection over `serving.search` [min_workers, max_workers] for the fewest workers whose every
    replication finishes by `serving.deadline_s`; `on_probe` is called after each simulated count."""
    serving = batch_serving(scenario)
    if serving.deadline_s is None:
        raise CapsimInputError("--solve needs a deadline to meet: set serving.deadline_s", field="serving.deadline_s")
    bounds = serving.search
    low, high = (bounds.min_workers, bounds.max_workers) if bounds is not None else (1, 256)
    seed = scenario.seed if seed is None else seed
    answer = WorkersAnswer(hardware=_label(scenario), workers=None)
    runs: dict[int, dict[str, Any]] = {}

    def meets(workers: int) -> bool:
        variant = scenario.model_copy(update={"serving": serving.model_copy(update={"workers": workers})})
        summary = run_batch_job(variant, seed, replications).summary
        runs[workers] = summary
        met = bool(summary["deadline_met"])
        answer.probes.append(Probe(workers, met, summary["makespan_s"], float(summary["cost"]["usd"])))
        if on_probe is not None:
            on_probe()
        return met

    if not meets(high):
        return answer
    while low < high:
        mid = (low + high) // 2
        if meets(mid):
            high = mid
        else:
            low = mid + 1
    answer.workers = high
    answer.summary = runs[high]
    return answer


def cheapest_hardware(
    scenario: Scenario, seed: int | None = None, replications: int = 1, *, on_probe: Callable[[], None] | None = None
) -> list[WorkersAnswer]:
    """The fewest workers on the scenario's hardware and on each `serving.search.hardware` candidate,
    cheapest first (candidates that cannot meet the deadline last); `on_probe` as for `fewest_workers`."""
    serving = batch_serving(scenario)
    if serving.search is None or not serving.search.hardware:
        raise CapsimInputError("--solve hardware needs candidates: list them in serving.search.hardware",
                               field="serving.search.hardware")  # fmt: skip
    answers = [fewest_workers(scenario, seed, replications, on_probe=on_probe)]
    for i, candidate in enumerate(serving.search.hardware):
        on_candidate = candidate_scenario(scenario, candidate, i)
        answers.append(fewest_workers(on_candidate, seed, replications, on_probe=on_probe))
    return sorted(answers, key=lambda a: (a.usd is None, a.usd if a.usd is not None else 0.0))
