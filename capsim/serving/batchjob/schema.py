"""`serving.mode: batch`: the scenario schema of a batch job over a dataset (see docs/model.md,
"Batch jobs"). Validation here is what one section can check on its own; rules that need the
service model (a deadline shorter than one batch) are in `capsim.serving.batchjob.checks`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.distributions import DurationSpec, FixedDuration
from capsim.input_model import InputModel
from capsim.servicetime import ServiceSpec
from capsim.serving.spot import SpotCapacity


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dataset(_Strict):
    """`serving.dataset`: the items to score, as a count split into partitions or as explicit sizes."""

    items: int | None = Field(default=None, ge=1, description="items in the dataset")
    partitions: int | None = Field(
        default=None, ge=1, description="split `items` into this many near-equal partitions (default: one per worker)"
    )
    partition_sizes: list[int] | None = Field(default=None, min_length=1, description="items in each partition")
    item_bytes: float | None = Field(default=None, gt=0, description="input bytes read per item (for read_mb_per_s)")

    @model_validator(mode="after")
    def _one_shape(self) -> Dataset:
        if (self.items is None) == (self.partition_sizes is None):
            raise ValueError("give exactly one of items or partition_sizes")
        if self.partition_sizes is not None:
            if self.partitions is not None:
                raise ValueError("partitions splits `items`; with partition_sizes the sizes say it")
            bad = [i for i, n in enumerate(self.partition_sizes) if not isinstance(n, int) or n < 1]
            if bad:
                raise ValueError(f"partition_sizes[{bad[0]}] must be an integer >= 1")
        if self.items is not None and self.partitions is not None and self.partitions > self.items:
            raise ValueError(f"partitions ({self.partitions}) must not exceed items ({self.items})")
        return self

    def sizes(self, workers: int) -> list[int]:
        """Items per partition, in the order workers take them. `items` split into P partitions
        gives the first `items mod P` partitions one item more than the rest."""
        if self.partition_sizes is not None:
            return list(self.partition_sizes)
        assert self.items is not None  # one of the two is set (validated)
        count = min(self.partitions or workers, self.items)
        base, extra = divmod(self.items, count)
        return [base + 1] * extra + [base] * (count - extra)

    def size_counts(self, workers: int) -> list[tuple[int, int]]:
        """`sizes` as (items, partitions of that size) runs, without a list as long as the partitions."""
        if self.partition_sizes is not None:
            return [(n, 1) for n in self.partition_sizes]
        assert self.items is not None  # one of the two is set (validated)
        count = min(self.partitions or workers, self.items)
        base, extra = divmod(self.items, count)
        return [(n, k) for n, k in ((base + 1, extra), (base, count - extra)) if k > 0]

    @property
    def total_items(self) -> int:
        """Items in the whole dataset."""
        return self.items if self.items is not None else sum(self.partition_sizes or [])


class WorkerStartup(_Strict):
    """`serving.worker_startup`: what a worker does before its first batch (each phase a duration
    distribution). Defaults are zero: a batch scenario states its start-up explicitly."""

    provisioning_s: DurationSpec = FixedDuration(value_s=0.0)
    image_pull_s: DurationSpec = FixedDuration(value_s=0.0)
    model_load_s: DurationSpec = FixedDuration(value_s=0.0)

    def mean_s(self) -> float:
        """Expected start-up time of one worker."""
        return self.provisioning_s.mean_s() + self.image_pull_s.mean_s() + self.model_load_s.mean_s()


class Checkpointing(_Strict):
    """`serving.checkpoint`: commit progress every `every_batches` batches within a partition."""

    every_batches: int = Field(ge=1, description="commit after this many batches (and always at a partition's end)")
    write_s: float = Field(default=0.0, ge=0, description="time a worker spends writing one checkpoint")


class HardwareCandidate(_Strict):
    """One entry of `serving.search.hardware`: other hardware to price the job on. Fields left out
    keep the scenario's; `service` is required unless the scenario's profile is transferred by
    roofline (`service.transfer`), because a parametric service time belongs to its hardware."""

    name: str = Field(min_length=1)
    usd_per_hour: float | None = Field(default=None, ge=0)
    gpus_per_replica: int = Field(default=1, ge=1)
    service: ServiceSpec | None = None
    spot: SpotCapacity | None = Field(default=None, description="spot terms on this hardware (null: on demand)")

    def hardware_fields(self) -> dict[str, Any]:
        """The scenario `hardware` section for this candidate (catalogue fills what is left out)."""
        fields: dict[str, Any] = {"name": self.name, "gpus_per_replica": self.gpus_per_replica}
        if self.usd_per_hour is not None:
            fields["usd_per_hour"] = self.usd_per_hour
        return fields


class Search(_Strict):
    """`serving.search`: the inverse question `capsim simulate --solve` answers — the fewest workers
    in [min_workers, max_workers] that meet `deadline_s`, and (with `hardware`) the cheapest
    candidate at its fewest workers."""

    min_workers: int = Field(default=1, ge=1)
    max_workers: int = Field(default=256, ge=1)
    hardware: list[HardwareCandidate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Search:
        if self.max_workers < self.min_workers:
            raise ValueError(f"max_workers ({self.max_workers}) must be >= min_workers ({self.min_workers})")
        return self


class BatchJobServing(_Strict):
    """A batch job: `workers` score a dataset in batches of `batch_size`, pulling partitions from a
    shared queue; reports makespan, throughput, utilization, cost and whether `deadline_s` is met."""

    mode: Literal["batch"]
    dataset: Dataset
    workers: int = Field(ge=1, description="workers launched at job start (each one replica of the hardware)")
    batch_size: int = Field(ge=1, description="items per batch (a partition's last batch may be smaller)")
    read_mb_per_s: float | None = Field(
        default=None, gt=0, description="input read throughput of one worker, MB/s (1e6 bytes); null: not limiting"
    )
    prefetch: bool = Field(default=True, description="read the next batch while the current one computes")
    job_startup_s: float = Field(default=0.0, ge=0, description="before any worker launches: scheduling, planning")
    worker_startup: WorkerStartup = WorkerStartup()
    checkpoint: Checkpointing | None = Field(default=None, description="null: progress commits at partition ends only")
    spot: SpotCapacity | None = None
    deadline_s: float | None = Field(default=None, gt=0, description="the job's window, from submission")
    search: Search | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BatchJobServing:
        if self.read_mb_per_s is not None and self.dataset.item_bytes is None:
            raise ValueError("read_mb_per_s needs dataset.item_bytes (the bytes read per item)")
        return self

    def spot_workers(self, workers: int) -> int:
        """Workers launched on spot: `fraction × workers`, rounded half up."""
        if self.spot is None:
            return 0
        return int(self.spot.fraction * workers + 0.5)
