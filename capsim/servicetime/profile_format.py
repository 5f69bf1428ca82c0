"""The service-time profile file: measured batch size → latency distribution, with provenance.

Written by `capsim profile` and `capsim calibrate`, read by `service: {kind: profile, path: ...}`.
A profile is JSON (so YAML readers can load it too)::

    {
      "format": "capsim-profile/1",
      "model": {"name": "mlp"},
      "hardware": {"name": "cpu-2core", "kind": "cpu", "device_name": "AMD EPYC ...", "threads": 2},
      "framework": {"name": "torch", "version": "2.13.0", "dtype": "float32", "device": "cpu"},
      "created_utc": "2026-11-22T14:00:00Z",
      "source": "capsim profile",
      "quantile_levels": [0.0, 0.01, ..., 1.0],
      "points": [{"batch_size": 1, "count": 600, "mean_ms": 1.21, "quantiles_ms": [...]}, ...],
      "provenance": {...}
    }

A profile may have a size axis (`capsim profile --sizes`; docs/model.md "Request size"): then it
has `"size_unit": "tokens"` and every point a `"size"`, the size of each request of the batches
measured there; the points go by (size, batch_size) and every size has the same batch sizes.

`quantiles_ms[i]` is the `quantile_levels[i]` quantile of one batch's service time (executor busy
time: from taking the batch to finishing it) at that batch size. The levels must start at 0 and end
at 1, so that the table is a whole inverse CDF. A draw interpolates linearly between levels, so the
last step, from the highest level below 1 to the maximum, spreads its share of the draws evenly up to
the largest measured time: `from_samples` adds levels 1 − 10⁻ᵏ until that share is at most one
sample's (`sample_levels`), or one rare stall in the measurements (a 131 ms batch among ~20,000 of
~2 ms) would take 0.1% of all draws instead of 0.005%.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from capsim.atomic import atomic_write_text
from capsim.errors import CapsimInputError
from capsim.input_files import read_json_file
from capsim.input_model import InputModel, input_error, item_error

PROFILE_FORMAT = "capsim-profile/1"

DEFAULT_QUANTILE_LEVELS: tuple[float, ...] = (
    0.0, 0.001, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65,
    0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0,
)  # fmt: skip


def sample_levels(sample_count: int) -> tuple[float, ...]:
    """The default levels, plus 1 − 10⁻ᵏ (k ≥ 4) until the step to the maximum holds at most one of
    `sample_count` samples' share of the draws (0.9999 and 0.99999 for 19,000 samples)."""
    tail = []
    k = 4
    while sample_count > 0 and 10.0 ** -(k - 1) > 1.0 / sample_count:
        tail.append(1.0 - 10.0**-k)
        k += 1
    return (*DEFAULT_QUANTILE_LEVELS[:-1], *tail, 1.0)


class ProfilePoint(InputModel):
    """The measured service-time distribution at one batch size (and, on a profile with a size
    axis, one request size: every request of the measured batches had `size` units)."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(ge=1)
    size: float | None = Field(default=None, gt=0, description="each request's size (profiles with a size axis)")
    count: int = Field(ge=1, description="number of batches measured")
    mean_ms: float = Field(gt=0)
    quantiles_ms: list[float]

    @field_validator("quantiles_ms")
    @classmethod
    def _latencies(cls, quantiles_ms: list[float]) -> list[float]:
        """A latency is never negative, and a higher quantile level never has a lower latency."""
        for i, value in enumerate(quantiles_ms):
            if value < 0:
                raise item_error(i, f"expected a latency >= 0 ms (got {value})")
            if i and value < quantiles_ms[i - 1]:
                raise item_error(i, f"expected at least quantiles_ms[{i - 1}] = {quantiles_ms[i - 1]} ms: "
                                 f"quantiles must not decrease with the level (got {value})")  # fmt: skip
        return quantiles_ms


class Profile(InputModel):
    """A whole profile file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    format: str = PROFILE_FORMAT
    model: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    framework: dict[str, Any] = Field(default_factory=dict)
    created_utc: str = ""
    source: str = ""
    quantile_levels: list[float] = Field(default_factory=lambda: list(DEFAULT_QUANTILE_LEVELS))
    points: list[ProfilePoint] = Field(min_length=1)
    provenance: dict[str, Any] = Field(default_factory=dict)
    size_unit: str | None = Field(default=None, description="what `size` counts, on a profile with a size axis")

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.format != PROFILE_FORMAT:
            raise ValueError(f"format must be '{PROFILE_FORMAT}'")
        levels = self.quantile_levels
        if len(levels) < 2 or levels[0] != 0.0 or levels[-1] != 1.0:
            raise ValueError("quantile_levels must start at 0.0 and end at 1.0")
        if any(b <= a for a, b in itertools.pairwise(levels)):
            raise ValueError("quantile_levels must be strictly increasing")
        if self.size_unit is None:
            if any(p.size is not None for p in self.points):
                raise ValueError("points have a size but the profile has no size_unit")
            sizes = [p.batch_size for p in self.points]
            if any(b <= a for a, b in itertools.pairwise(sizes)):
                raise ValueError("points must have strictly increasing batch_size")
        else:
            self._check_size_grid()
        for p in self.points:
            if len(p.quantiles_ms) != len(levels):
                raise ValueError(f"batch_size {p.batch_size}: quantiles_ms needs {len(levels)} values")
        return self

    def _check_size_grid(self) -> None:
        """A size axis is a full grid: every point has a size; points go by size, then batch size;
        every size has the same batch sizes."""
        if any(p.size is None for p in self.points):
            raise ValueError("a profile with a size_unit needs a size on every point")
        keys = [(p.size, p.batch_size) for p in self.points]
        if any(b <= a for a, b in itertools.pairwise(keys)):
            raise ValueError("points must go by strictly increasing (size, batch_size)")
        per_size: dict[float, list[int]] = {}
        for p in self.points:
            per_size.setdefault(float(p.size), []).append(p.batch_size)  # type: ignore[arg-type]
        first = next(iter(per_size.values()))
        for size, batch_sizes in per_size.items():
            if batch_sizes != first:
                raise ValueError(f"size {size:g} has batch sizes {batch_sizes}, size {self.points[0].size:g} has "
                                 f"{first}: every size needs the same batch sizes")  # fmt: skip

    def size_grid(self) -> list[float]:
        """The sizes of the size axis, increasing ([] without one)."""
        return sorted({float(p.size) for p in self.points if p.size is not None})

    def points_at(self, size: float | None) -> list[ProfilePoint]:
        """The points measured at one size of the size axis (all of them without one)."""
        return [p for p in self.points if p.size == size]

    @classmethod
    def from_samples(cls, samples_ms: dict[int, np.ndarray] | dict[tuple[float, int], np.ndarray],
                     **metadata: Any) -> Profile:  # fmt: skip
        """Build a profile from raw per-batch service times (ms) keyed by batch size, or by
        (request size, batch size) for a profile with a size axis (give `size_unit` too)."""
        levels = np.asarray(sample_levels(max((np.size(v) for v in samples_ms.values()), default=0)))
        points = []
        keyed: list[tuple[Any, np.ndarray]] = sorted(samples_ms.items(), key=lambda item: item[0])
        for key, raw in keyed:
            values = np.asarray(raw, dtype=np.float64)
            if values.size == 0:
                continue
            size, batch_size = key if isinstance(key, tuple) else (None, key)
            points.append(
                ProfilePoint(
                    batch_size=int(batch_size),
                    size=None if size is None else float(size),
                    count=int(values.size),
                    mean_ms=float(values.mean()),
                    quantiles_ms=[float(v) for v in np.quantile(values, levels)],
                )
            )
        return cls(quantile_levels=list(levels), points=points, **metadata)

    def write(self, path: Path) -> None:
        """Write atomically (a reader never sees half a profile), with the user's umask."""
        data = self.model_dump(mode="json")
        if self.size_unit is None:  # a profile without a size axis reads as it did before sizes existed
            del data["size_unit"]
            for point in data["points"]:
                del point["size"]
        atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


def read_profile(path: Path, field: str = "service.path") -> Profile:
    """Load and validate a profile file, with one-line errors naming the file and the field."""
    if not path.is_file():
        raise CapsimInputError("profile file not found", source=str(path), field=field)
    data = read_json_file(path, "profile file")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise input_error(exc, data, str(path)) from None
