"""Rules of a batch job that need more than its own section: the service model, the horizon. Run
when a scenario is loaded (so errors name the file) and again by `simulate`."""

from __future__ import annotations

from capsim.errors import CapsimInputError
from capsim.scenario import Scenario
from capsim.serving.batchjob.schema import BatchJobServing


def batch_serving(scenario: Scenario) -> BatchJobServing:
    """The scenario's batch section (a programming error, not bad input, when it has another mode)."""
    serving = scenario.serving
    if not isinstance(serving, BatchJobServing):
        raise TypeError(f"expected a batch scenario, got serving.mode {serving.mode}")
    return serving


def read_s(serving: BatchJobServing, items: int) -> float:
    """Seconds one worker takes to read `items` items (0 when reads are not limiting)."""
    if serving.read_mb_per_s is None or serving.dataset.item_bytes is None:
        return 0.0
    return items * serving.dataset.item_bytes / (serving.read_mb_per_s * 1e6)


def one_batch_s(scenario: Scenario) -> tuple[int, float, float]:
    """The first batch any worker can run: (items, mean service seconds, read seconds)."""
    serving = batch_serving(scenario)
    largest = max(serving.dataset.sizes(serving.workers))
    items = min(serving.batch_size, largest)
    return items, scenario.service.mean_s(items), read_s(serving, items)


def check_batch_job(scenario: Scenario, candidates: bool = True) -> None:
    """Raise a one-line `CapsimInputError` when no number of workers could meet the deadline (it is
    shorter than the job's start-up plus one batch: its mean service time and its read), or, with
    `candidates`, when a `serving.search.hardware` candidate is not a valid scenario of its own."""
    serving = batch_serving(scenario)
    if candidates and serving.search is not None:
        from capsim.serving.batchjob.search import candidate_scenario  # search imports this module

        for i, candidate in enumerate(serving.search.hardware):
            on_candidate = candidate_scenario(scenario, candidate, i)
            try:
                check_batch_job(on_candidate, candidates=False)
            except CapsimInputError as exc:
                raise CapsimInputError(exc.detail, field=f"serving.search.hardware[{i}]: {exc.field}") from None
    if serving.deadline_s is None:
        return
    items, service_s, reading_s = one_batch_s(scenario)
    floor_s = serving.job_startup_s + serving.worker_startup.mean_s() + reading_s + service_s
    if serving.deadline_s < floor_s:
        raise CapsimInputError(
            f"{serving.deadline_s:g} s is shorter than start-up plus one batch ({floor_s:.4g} s: job start-up "
            f"{serving.job_startup_s:g} s, worker start-up {serving.worker_startup.mean_s():.4g} s mean, one batch of "
            f"{items} items {service_s:.4g} s mean service + {reading_s:.4g} s read): no number of workers can meet it",
            field="serving.deadline_s",
        )


def partition_s(scenario: Scenario, items: int) -> float:
    """Mean time one worker takes to score a partition of `items` items from its start, by the
    worker's rules with mean service times: the first read, then each batch's compute (plus its
    checkpoint write, if one follows) overlapped with the next batch's read (prefetch) or after it."""
    serving = batch_serving(scenario)
    full, rest = divmod(items, serving.batch_size)
    sizes = [serving.batch_size] * full + ([rest] if rest else [])
    every = serving.checkpoint.every_batches if serving.checkpoint is not None else len(sizes)
    write_s = serving.checkpoint.write_s if serving.checkpoint is not None else 0.0
    total_s = read_s(serving, sizes[0])
    for k, n in enumerate(sizes):
        last = k == len(sizes) - 1
        step_s = scenario.service.mean_s(n) + (write_s if last or (k + 1) % every == 0 else 0.0)
        next_read_s = 0.0 if last else read_s(serving, sizes[k + 1])
        total_s += max(step_s, next_read_s) if serving.prefetch else step_s + next_read_s
    return total_s


def makespan_floor_s(scenario: Scenario) -> float:
    """A lower bound on the makespan from mean times, without interruptions or start-up variation:
    start-up, then the larger of the longest partition and a perfect share of all partitions' time.
    Exact for deterministic service when partitions divide evenly among the workers."""
    serving = batch_serving(scenario)
    times = [partition_s(scenario, n) for n in serving.dataset.sizes(serving.workers)]
    startup_s = serving.job_startup_s + serving.worker_startup.mean_s()
    return startup_s + max(max(times), sum(times) / serving.workers)
