"""Service times from a measured profile, interpolated between the measured batch sizes (and, on a
profile with a size axis, between the measured request sizes: docs/model.md "Request size")."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PrivateAttr

from capsim.hardware.catalogue import Catalogue
from capsim.hardware.spec import HardwareSpec
from capsim.rng import buffered
from capsim.servicetime.base import FORM_QUANTILE, SIZE_RULES, BatchSampler, BatchTimeTable, SizedServiceModel
from capsim.servicetime.profile_format import Profile, ProfilePoint, read_profile
from capsim.servicetime.transfer import TransferSpec, apply_transfer


def _weights(sizes: list[int] | list[float], batch_size: float) -> tuple[int, int, float]:
    """Indices of the two measured sizes to blend for `batch_size`, and the weight of the second.

    Between measured sizes the blend is linear; beyond the largest (or below the smallest) it
    extrapolates along the line through the two outermost points, which is how batch latency grows
    once the device is saturated.
    """
    if len(sizes) == 1:
        return 0, 0, 0.0
    i = bisect.bisect_left(sizes, batch_size)
    if i < len(sizes) and sizes[i] == batch_size:
        return i, i, 0.0
    lo = min(max(i - 1, 0), len(sizes) - 2)
    hi = lo + 1
    return lo, hi, (batch_size - sizes[lo]) / (sizes[hi] - sizes[lo])


def _blend(lo: np.ndarray, hi: np.ndarray, w: float) -> np.ndarray:
    """`lo` and `hi` blended with weight `w` on `hi` (works for curves and means alike). Beyond the
    outermost points the line through them can cross the measurements when they are noisy: a
    larger batch (or size) never takes less than the largest measured one, a smaller one never more
    than the smallest, and never less than no time."""
    q = (1 - w) * lo + w * hi
    if w > 1:
        q = np.maximum(q, hi)
    elif w < 0:
        q = np.clip(q, 0.0, lo)
    return np.maximum(q, 0.0)


class ProfileService(SizedServiceModel):
    """Batch times drawn from a measured profile (see `profile_format`). At a measured batch size a
    draw follows the measured distribution exactly (inverse CDF through its quantiles); between
    sizes, the quantile curves of the neighbours are blended linearly in batch size."""

    kind: Literal["profile"] = "profile"
    path: str
    scale: float = Field(default=1.0, gt=0, description="multiply every time (what-if: a faster model)")
    transfer: TransferSpec | None = Field(
        default=None, description="run the measured profile on the scenario's hardware (roofline estimate)"
    )
    _transferred: Profile | None = PrivateAttr(default=None)

    def on_hardware(self, target: HardwareSpec, catalogue: Catalogue) -> ProfileService:
        """A copy whose profile is transferred to `target` (when `transfer` asks for it)."""
        if self.transfer is None:
            return self
        copy = self.model_copy()
        copy._transferred = apply_transfer(read_profile(Path(self.path)), self.transfer, target, catalogue)
        return copy

    def resolve_paths(self, base_dir: Path) -> ProfileService:
        path = Path(self.path)
        return self if path.is_absolute() else self.model_copy(update={"path": str(base_dir / path)})

    @cached_property
    def profile(self) -> Profile:
        """The loaded profile file (transferred to the scenario's hardware when asked)."""
        return self._transferred if self._transferred is not None else read_profile(Path(self.path))

    def _at(self, batch_size: int, items: float | None, value: Callable[[ProfilePoint], np.ndarray]) -> np.ndarray:
        """`value` of the points (a quantile curve or a mean, ms) interpolated at `batch_size` and,
        on a profile with a size axis, at the per-request size items / batch_size (the batch's
        work spread evenly: a padded batch of k requests of largest size m does k × m)."""
        grid = self.profile.size_grid()

        def at_size(size: float | None) -> np.ndarray:
            points = self.profile.points_at(size)
            lo, hi, w = _weights([p.batch_size for p in points], batch_size)
            return _blend(value(points[lo]), value(points[hi]), w)

        if not grid:
            return at_size(None)
        per_request = 1.0 if items is None else items / batch_size
        lo, hi, w = _weights(grid, per_request)
        return _blend(at_size(grid[lo]), at_size(grid[hi]), w)

    def quantiles_s(self, batch_size: int, items: float | None = None) -> np.ndarray:
        """The interpolated quantile curve (seconds) at `batch_size` (and the batch's work `items`
        in size units), on the profile's levels."""
        return self._at(batch_size, items, lambda p: np.asarray(p.quantiles_ms)) * self.scale / 1000.0

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        # The same guard as quantiles_s: noisy outermost points must not extrapolate a larger batch
        # below the largest measured one (a mean of 0 would make capacity infinite).
        return float(self._at(batch_size, items, lambda p: np.asarray(p.mean_ms))) * self.scale / 1000.0

    def sizes_outside(self, smallest: float, largest: float) -> bool:
        """Whether requests of sizes in [smallest, largest] reach beyond the profile's size axis
        (their times are then extrapolated, and the run says so: capsim.stability)."""
        grid = self.profile.size_grid()
        return bool(grid) and (smallest < grid[0] or largest > grid[-1])

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        levels = list(self.profile.quantile_levels)
        curves: dict[tuple[int, float | None], list[float]] = {}
        uniforms = buffered(rng.random)

        def draw(batch_size: int, items: float | None = None) -> float:
            curve = curves.get((batch_size, items))
            if curve is None:
                curve = curves[batch_size, items] = self.quantiles_s(batch_size, items).tolist()
            u = next(uniforms)
            j = bisect.bisect_right(levels, u)
            if j >= len(levels):
                return curve[-1]
            lo_level, hi_level = levels[j - 1], levels[j]
            t = (u - lo_level) / (hi_level - lo_level)
            return curve[j - 1] + t * (curve[j] - curve[j - 1])

        return draw

    def batch_time_table(self, max_batch_size: int) -> BatchTimeTable:
        levels = np.asarray(self.profile.quantile_levels, dtype=np.float64)
        grid = self.profile.size_grid()
        m = max(len(grid), 1)
        curves = np.zeros(((max_batch_size + 1) * m, levels.size))
        for k in range(1, max_batch_size + 1):
            if not grid:
                curves[k] = self.quantiles_s(k)
            for j, size in enumerate(grid):  # row k·m + j: batch size k, every request of size grid[j]
                curves[k * m + j] = self.quantiles_s(k, k * size)
        return BatchTimeTable(FORM_QUANTILE, "random", np.zeros(max_batch_size + 1), levels=levels, quantiles_s=curves,
                              size_grid=np.asarray(grid or [1.0]), size_rule=SIZE_RULES[self.size_rule])  # fmt: skip

    def describe(self) -> dict[str, object]:
        p = self.profile
        path = Path(self.path)
        try:  # shown relative to the working directory when under it: summaries stay portable
            shown = str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(path)
        described: dict[str, object] = {
            "kind": "profile",
            "path": shown,
            "model": p.model,
            "hardware": p.hardware,
            "framework": p.framework,
            "created_utc": p.created_utc,
            "source": p.source,
            "provenance": p.provenance,
            "extrapolated": bool(p.provenance.get("extrapolated", False)),
        }
        if p.size_unit is not None:
            described["size_axis"] = {"unit": p.size_unit, "sizes": p.size_grid(), "rule": self.size_rule}
        calibration = p.provenance.get("calibration")
        if isinstance(calibration, dict) and calibration.get("validation"):
            # How far this profile's predictions were from measurement (held out when available).
            described["validation"] = calibration["validation"]
        return described
