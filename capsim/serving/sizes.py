"""Request sizes meet the service time: the size sampler a real-time run feeds its fleet, after
checking that the service time can use sizes (docs/model.md "Request size")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from capsim.errors import CapsimInputError
from capsim.servicetime.profile import ProfileService
from capsim.workload.size import SIZE_STREAM, SizeSampler
from capsim.workload.tokens import TraceTokens, trace_token_column
from capsim.workload.trace import TraceArrival

if TYPE_CHECKING:
    from capsim.rng import RandomStreams
    from capsim.scenario.schema import Scenario


def _profile(scenario: Scenario) -> ProfileService | None:
    service = getattr(scenario.service, "base", scenario.service)  # (a MIG slice's scaled service)
    return service if isinstance(service, ProfileService) else None


def check_sizes(scenario: Scenario) -> None:
    """Refuse a profile whose size axis does not match the workload: sizes given to a profile
    measured without them (its times say nothing about size), or a size axis without sizes."""
    size = scenario.workload.size if scenario.workload is not None else None
    profile = _profile(scenario)
    if profile is None:
        return
    unit = profile.profile.size_unit
    if size is not None and unit is None:
        raise CapsimInputError("workload.size is set but the profile has no size axis: measure one (capsim "
                               "profile --sizes) or remove workload.size", source=profile.path,
                               field="service.path")  # fmt: skip
    if size is None and unit is not None:
        raise CapsimInputError(f"the profile has a size axis ({unit}): add workload.size (in {unit})",
                               source=profile.path, field="workload.size")  # fmt: skip


def size_sampler(scenario: Scenario, streams: RandomStreams) -> SizeSampler | None:
    """The sampler of `workload.size` for one replication (None without sizes), checked first."""
    check_sizes(scenario)
    workload = scenario.workload
    if workload is None or workload.size is None:
        return None
    return SizeSampler(workload.size, streams.stream(SIZE_STREAM), workload.arrival)


def size_extrapolation_warnings(scenario: Scenario) -> list[str]:
    """A warning when requests' sizes reach beyond the profile's size axis (their times are then
    extrapolated along the outermost two sizes, never below the largest measured)."""
    size = scenario.workload.size if scenario.workload is not None else None
    profile = _profile(scenario)
    if size is None or profile is None or profile.profile.size_unit is None:
        return []
    smallest, largest = size.bounds()
    if not profile.sizes_outside(smallest, largest):
        return []
    grid = profile.profile.size_grid()
    return [f"workload.size: requests of {smallest:g} to {largest:g} {size.unit} reach beyond the profile's "
            f"measured sizes {grid[0]:g} to {grid[-1]:g}: their service times are extrapolated (measure the "
            f"sizes out to {smallest:g} and {largest:g}: capsim profile --sizes)"]  # fmt: skip


def mean_batch_items(scenario: Scenario, batch_size: int, batches: int = 2000) -> float | None:
    """The mean work in size units of a full batch of `batch_size` requests (by the service's
    `size_rule`), from `batches` batches drawn on a fixed stream (the capacity estimate's input;
    a padded batch's expected largest size has no closed form for most distributions). None
    without sizes."""
    import numpy as np

    workload = scenario.workload
    if workload is None or workload.size is None:
        return None
    rng = np.random.default_rng(0)
    dist = workload.size.distribution
    if isinstance(dist, TraceTokens) and isinstance(workload.arrival, TraceArrival):
        # A trace's sizes belong to its rows in order: resample them (the run may have fewer rows
        # than `batches` full batches).
        column = trace_token_column(workload.arrival, dist.column or "size", "workload.size.distribution")
        sizes = column[rng.integers(0, column.size, size=batch_size * batches)].astype(np.float64)
    else:
        sizes = SizeSampler(workload.size, rng, workload.arrival).draw(batch_size * batches)
    grouped = sizes.reshape(batches, batch_size)
    service = getattr(scenario.service, "base", scenario.service)
    if getattr(service, "size_rule", "total") == "max":
        return float(batch_size * grouped.max(axis=1).mean())
    return float(grouped.sum(axis=1).mean())
