"""Roofline time of one batch on one replica: the slower of compute and memory traffic at peak rates.

A model declares its cost (`ModelCost`): operations per item, weight bytes read once per batch, and
activation bytes moved per item. For a batch of k items on a replica of g devices:

    compute_s(k) = flops_per_item × k / (peak(precision) × 1e12 × p)
    memory_s(k)  = (weight_bytes + activation_bytes_per_item × k) × s / (bandwidth_gbps × 1e9 × p)
    roofline_s(k) = max(compute_s, memory_s)

where p = 1 for one device and g × scaling_efficiency for g > 1 (tensor parallelism shards both
the operations and the weights, and the efficiency stands for the all-reduce and imbalance), and
s = bytes per element at `precision` ÷ bytes per element at the precision the byte counts were
declared in (weights at fp16 are half their fp32 size). See docs/hardware.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.errors import CapsimInputError
from capsim.hardware.spec import BYTES_PER_ELEMENT, PRECISION_COLUMN, HardwareSpec, Precision
from capsim.input_model import InputModel


class ModelCost(InputModel):
    """What one batch of a model costs, independent of hardware.

    `flops_per_item` counts operations (a multiply-add is 2) for one item; `weight_bytes` are read
    once per batch; `activation_bytes_per_item` are moved per item. Byte counts are at
    `bytes_precision`, and scale with the element size when a transfer changes precision.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    flops_per_item: float = Field(ge=0)
    weight_bytes: float = Field(default=0.0, ge=0)
    activation_bytes_per_item: float = Field(default=0.0, ge=0)
    bytes_precision: Precision = "fp16"

    @model_validator(mode="after")
    def _some_cost(self) -> ModelCost:
        if self.flops_per_item == 0 and self.weight_bytes == 0 and self.activation_bytes_per_item == 0:
            raise ValueError("a model needs flops_per_item or bytes > 0")
        return self

    def bytes_per_batch(self, batch_size: int, precision: str) -> float:
        """Bytes moved by one batch at `precision`."""
        scale = BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[self.bytes_precision]
        return (self.weight_bytes + self.activation_bytes_per_item * batch_size) * scale


def check_precision(precision: str, field: str = "precision") -> str:
    """`precision` if capsim knows it, else a one-line error listing the known ones."""
    if precision not in PRECISION_COLUMN:
        raise CapsimInputError(f"unknown precision '{precision}' (expected one of: {', '.join(PRECISION_COLUMN)})",
                               field=field)  # fmt: skip
    return precision


def peak_ops_per_s(spec: HardwareSpec, precision: str) -> float:
    """Dense peak operations per second of one device at `precision` (the catalogue's column).

    A null column (no FP8 on Ampere, no tensor figure for a CPU instance) is an error that names it.
    """
    column = PRECISION_COLUMN[check_precision(precision)]
    return spec.require(column, f"a roofline estimate at {precision}") * 1e12


def bandwidth_bytes_per_s(spec: HardwareSpec) -> float:
    """Peak memory bandwidth of one device in bytes per second."""
    return spec.require("memory_bandwidth_gbps", "a roofline estimate") * 1e9


def parallel_factor(gpus: int, scaling_efficiency: float) -> float:
    """How many single-device equivalents a replica of `gpus` devices is: 1, or gpus × efficiency."""
    if gpus < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {gpus}", field="gpus_per_replica")
    if not 0.0 < scaling_efficiency <= 1.0:
        raise CapsimInputError(f"expected a number in (0, 1], got {scaling_efficiency}", field="scaling_efficiency")
    return 1.0 if gpus == 1 else gpus * scaling_efficiency


@dataclass(frozen=True)
class RooflineTime:
    """One batch's roofline estimate and which side bounds it."""

    compute_s: float
    memory_s: float

    @property
    def time_s(self) -> float:
        """The roofline time: the slower of the two."""
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> Literal["compute", "memory"]:
        """Which resource limits the batch."""
        return "compute" if self.compute_s >= self.memory_s else "memory"


def roofline_time(model: ModelCost, spec: HardwareSpec, batch_size: int, precision: str, gpus: int = 1,
                  scaling_efficiency: float = 0.9) -> RooflineTime:  # fmt: skip
    """Roofline time of a batch of `batch_size` items on a replica of `gpus` devices of `spec`.

    A side with zero work (no operations, or no bytes) needs no figure from the catalogue.
    """
    check_precision(precision)
    p = parallel_factor(gpus, scaling_efficiency)
    ops = model.flops_per_item * batch_size
    moved = model.bytes_per_batch(batch_size, precision)
    compute_s = ops / (peak_ops_per_s(spec, precision) * p) if ops > 0 else 0.0
    memory_s = moved / (bandwidth_bytes_per_s(spec) * p) if moved > 0 else 0.0
    return RooflineTime(compute_s=compute_s, memory_s=memory_s)


def check_fits(model: ModelCost, spec: HardwareSpec, precision: str, gpus: int = 1) -> None:
    """Error when the weights alone do not fit in the memory of `gpus` devices (skipped if unknown)."""
    if spec.memory_gb.value is None:
        return
    need_gb = model.bytes_per_batch(0, precision) / 1e9
    have_gb = spec.memory_gb.value * gpus
    if need_gb > have_gb:
        raise CapsimInputError(
            f"model weights need {need_gb:.4g} GB at {precision} but {gpus} × {spec.name} have {have_gb:.4g} GB; "
            "use more gpus_per_replica or a lower precision",
            field="gpus_per_replica",
        )
