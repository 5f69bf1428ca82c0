"""Service times from a measured profile, interpolated between the measured batch sizes."""

from __future__ import annotations

import bisect
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PrivateAttr

from capsim.hardware.catalogue import Catalogue
from capsim.hardware.spec import HardwareSpec
from capsim.rng import buffered
from capsim.servicetime.base import FORM_QUANTILE, BatchSampler, BatchTimeTable, ServiceTimeModel
from capsim.servicetime.profile_format import Profile, read_profile
from capsim.servicetime.transfer import TransferSpec, apply_transfer


def _weights(sizes: list[int], batch_size: int) -> tuple[int, int, float]:
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


class ProfileService(ServiceTimeModel):
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

    def quantiles_s(self, batch_size: int) -> np.ndarray:
        """The interpolated quantile curve (seconds) at `batch_size`, on the profile's levels."""
        points = self.profile.points
        lo, hi, w = _weights([p.batch_size for p in points], batch_size)
        q_lo, q_hi = np.asarray(points[lo].quantiles_ms), np.asarray(points[hi].quantiles_ms)
        q = (1 - w) * q_lo + w * q_hi
        # Outside the measured sizes the line through the outermost two points can cross the
        # measurements when they are noisy: a larger batch never takes less than the largest measured
        # one, a smaller one never more than the smallest (and never less than no time).
        if w > 1:
            q = np.maximum(q, q_hi)
        elif w < 0:
            q = np.clip(q, 0.0, q_lo)
        return np.maximum(q, 0.0) * self.scale / 1000.0

    def mean_s(self, batch_size: int) -> float:
        points = self.profile.points
        lo, hi, w = _weights([p.batch_size for p in points], batch_size)
        mean_ms = (1 - w) * points[lo].mean_ms + w * points[hi].mean_ms
        # The same guard as quantiles_s: noisy outermost points must not extrapolate a larger batch
        # below the largest measured one (a mean of 0 would make capacity infinite).
        if w > 1:
            mean_ms = max(mean_ms, points[hi].mean_ms)
        elif w < 0:
            mean_ms = min(mean_ms, points[lo].mean_ms)
        return max(mean_ms, 0.0) * self.scale / 1000.0

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        levels = list(self.profile.quantile_levels)
        curves: dict[int, list[float]] = {}
        uniforms = buffered(rng.random)

        def draw(batch_size: int) -> float:
            curve = curves.get(batch_size)
            if curve is None:
                curve = curves[batch_size] = self.quantiles_s(batch_size).tolist()
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
        curves = np.zeros((max_batch_size + 1, levels.size))
        for k in range(1, max_batch_size + 1):
            curves[k] = self.quantiles_s(k)
        return BatchTimeTable(FORM_QUANTILE, "random", np.zeros(max_batch_size + 1), levels=levels, quantiles_s=curves)

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
        calibration = p.provenance.get("calibration")
        if isinstance(calibration, dict) and calibration.get("validation"):
            # How far this profile's predictions were from measurement (held out when available).
            described["validation"] = calibration["validation"]
        return described
