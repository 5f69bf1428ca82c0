"""Rules of a batch job that need more than its own section: the service model, the horizon. Run
when a scenario is loaded (so errors name the file) and again by `simulate`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from capsim.errors import CapsimInputError
from capsim.serving.batchjob.schema import BatchJobServing

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario


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
    largest = max(n for n, _ in serving.dataset.size_counts(serving.workers))
    items = min(serving.batch_size, largest)
    return items, scenario.service.mean_s(items), read_s(serving, items)


def check_batch_job(scenario: Scenario) -> None:
    """Raise a one-line `CapsimInputError` when no number of workers could meet the deadline: it is
    shorter than the job's start-up plus one batch (its mean service time and its read). The
    `serving.search.hardware` candidates are checked by the loader (`capsim.scenario.load`), which
    builds each as a scenario of its own and runs this check on it."""
    serving = batch_serving(scenario)
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
    checkpoint write, if one follows) overlapped with the next batch's read (prefetch) or after it.

    Counted by kind of batch rather than batch by batch, so that a dataset of 10^15 items costs no
    more to check than one of ten (batches differ only in size, checkpoint and next read)."""
    serving = batch_serving(scenario)
    size = serving.batch_size
    full, rest = divmod(items, size)
    count = full + (1 if rest else 0)
    every = serving.checkpoint.every_batches if serving.checkpoint is not None else count
    write_s = serving.checkpoint.write_s if serving.checkpoint is not None else 0.0

    def batch_s(n: int, checkpoint: bool, next_items: int) -> float:
        step_s = scenario.service.mean_s(n) + (write_s if checkpoint else 0.0)
        next_read_s = read_s(serving, next_items) if next_items else 0.0
        return max(step_s, next_read_s) if serving.prefetch else step_s + next_read_s

    total_s = read_s(serving, size if full else rest) + batch_s(rest or size, True, 0)  # the first read; the last batch
    plain = count - 1 - (1 if rest and full else 0)  # full batches followed by a full one
    if plain > 0:
        with_checkpoint = plain // every
        total_s += with_checkpoint * batch_s(size, True, size) + (plain - with_checkpoint) * batch_s(size, False, size)
    if rest and full:  # the last full batch, followed by the smaller rest
        total_s += batch_s(size, (count - 1) % every == 0, rest)
    return total_s


def makespan_floor_s(scenario: Scenario) -> float:
    """A lower bound on the makespan from mean times, without interruptions or start-up variation:
    start-up, then the larger of the longest partition and a perfect share of all partitions' time.
    Exact for deterministic service when partitions divide evenly among the workers."""
    serving = batch_serving(scenario)
    times = [(partition_s(scenario, n), k) for n, k in serving.dataset.size_counts(serving.workers)]
    startup_s = serving.job_startup_s + serving.worker_startup.mean_s()
    return startup_s + max(max(t for t, _ in times), sum(t * k for t, k in times) / serving.workers)
