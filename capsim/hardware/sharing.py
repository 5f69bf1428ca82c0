"""Several replicas on one GPU without partitioning it: time-slicing and MPS (`hardware.sharing`).

Kubernetes' NVIDIA device plugin can advertise one GPU as several (time-slicing: the GPU's scheduler
switches between the processes' contexts), and CUDA MPS lets their kernels run at once on shared SMs
(https://docs.nvidia.com/deploy/mps/). Neither isolates the replicas as MIG does, so a batch that
starts while other replicas on its GPU are busy takes longer. The interference rule is
`capsim.serving.dataplane.rules.interference_factor`: a batch's service time is multiplied by
`1 + alpha × c`, c being the replicas on its GPU busy when it starts —

- time-slicing: alpha = 1 (round-robin: each busy context gets 1/(1 + c) of the GPU's time);
- MPS: alpha per busy co-runner, measured (0 would be no interference, 1 as bad as time-slicing);
  capsim has no measured default, so the scenario gives it.

The bill counts whole GPUs, `replicas_per_gpu` replicas to each (`capsim.hardware.cost.gpus_for_slices`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import ConfigDict, Field, model_validator

from capsim.hardware.mig import MigSlice
from capsim.input_model import InputModel


class GpuSharing(InputModel):
    """A scenario's `hardware.sharing`: `replicas_per_gpu` replicas share one GPU by time-slicing or MPS."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["time_slicing", "mps"]
    replicas_per_gpu: int = Field(ge=1, description="replicas placed on one physical GPU")
    alpha: float | None = Field(
        default=None, ge=0, description="MPS: slowdown per busy co-runner (measured); time-slicing: 1"
    )

    @model_validator(mode="after")
    def _alpha_fits_kind(self) -> GpuSharing:
        if self.kind == "mps" and self.alpha is None:
            raise ValueError("MPS needs alpha, the slowdown per busy co-runner measured on your GPU "
                             "(capsim has no measured default); 1 is as bad as time-slicing")  # fmt: skip
        if self.kind == "time_slicing" and self.alpha not in (None, 1.0):
            raise ValueError("time-slicing's slowdown is 1 per busy co-runner: leave alpha out (or use kind: mps)")
        return self

    @property
    def slowdown_per_busy_corunner(self) -> float:
        """alpha: 1 for time-slicing, the measured figure for MPS."""
        return 1.0 if self.alpha is None else self.alpha

    @property
    def saturated_slowdown(self) -> float:
        """`interference_factor` with every co-runner busy, 1 + alpha × (replicas_per_gpu − 1): a
        loaded GPU's batches, which the capacity estimate (capsim.stability) divides its rate by —
        under time-slicing k replicas then carry one GPU's load, not k."""
        return 1.0 + self.slowdown_per_busy_corunner * (self.replicas_per_gpu - 1)


class SharedHardware(Protocol):
    """A scenario's `hardware` block as GPU sharing reads it."""

    @property
    def mig(self) -> MigSlice | None: ...
    @property
    def sharing(self) -> GpuSharing | None: ...


def replicas_per_gpu(hardware: SharedHardware) -> int | None:
    """Replicas on one physical GPU: MIG's slices per GPU or `sharing.replicas_per_gpu`; None when
    each replica has GPUs of its own."""
    if hardware.mig is not None:
        return hardware.mig.slices_per_gpu
    if hardware.sharing is not None:
        return hardware.sharing.replicas_per_gpu
    return None
