"""MIG (Multi-Instance GPU): a GPU's partition profiles in the catalogue, and the slice a scenario's
replicas run on.

NVIDIA's MIG user guide ("Supported MIG Profiles",
https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html) splits an A100,
H100 or H200 into 7 compute slices (sevenths of the SMs) and 8 memory slices; a profile `<g>g.<m>gb`
holds g compute slices and m GB, and the guide gives how many instances of it fit on one GPU
(1g.10gb: 7 on an A100-80GB; 3g.40gb: 2). The catalogue lists each GPU's profiles with that count.

A scenario says `hardware: {name: A100-80GB, mig: 1g.10gb}`: each replica runs on one slice.
`resolve_mig` fills in the three figures the run needs from the catalogue:

- `slices_per_gpu`: replicas packed on one physical GPU (the guide's instance count). The bill
  counts whole GPUs (`capsim.hardware.cost.gpus_for_slices`): the cloud rents the GPU, not the slice.
- `compute_share`: g / 7 of the GPU's SMs, which also sets the slice's share of the GPU's busy power.
- `service_scale`: how much longer a batch takes on the slice than on the whole GPU the scenario's
  service time describes: 7 / g by default (`mig_service_scale`). Set it to 1 when the service time
  was measured on the slice itself, or to a measured ratio.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel

COMPUTE_SLICES_PER_GPU = 7
"""An A100/H100/H200 has 7 compute slices (MIG user guide: 'Fraction of SMs' in sevenths)."""


def mig_service_scale(compute_sevenths: int) -> float:
    """How much longer a batch takes on a slice of `compute_sevenths` sevenths than on the whole GPU:
    7 / g, the inverse of its share of the SMs.

    Exact for a batch that keeps every SM of the whole GPU busy (compute-bound). A memory-bound batch
    scales with the slice's share of memory bandwidth instead, which MIG partitions too, in eighths
    (a 1g slice has 1/8 of the memory slices and L2: the guide's 'Fraction of Memory'), so 7/g is
    then within 7/8 of it. A small model that leaves most of a whole GPU idle (launch- or host-bound
    batches) slows down far less than 7/g on a slice: measure it there and set `service_scale`.
    """
    if not 1 <= compute_sevenths <= COMPUTE_SLICES_PER_GPU:
        raise ValueError(f"compute_sevenths must be in 1..{COMPUTE_SLICES_PER_GPU}, got {compute_sevenths}")
    return COMPUTE_SLICES_PER_GPU / compute_sevenths


class MigProfile(InputModel):
    """One MIG profile of a GPU, as the guide's table gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    compute_sevenths: int = Field(ge=1, le=COMPUTE_SLICES_PER_GPU, description="compute slices (sevenths of the SMs)")
    memory_gb: float = Field(gt=0, description="the profile's memory, as its name gives it")
    per_gpu: int = Field(ge=1, le=COMPUTE_SLICES_PER_GPU, description="instances of it that fit on one GPU")


class MigProfiles(InputModel):
    """A catalogue entry's `mig:` block: its profiles by name, with their source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str
    confidence: str
    note: str | None = None
    profiles: dict[str, MigProfile] = Field(min_length=1)


class MigSlice(InputModel):
    """A scenario's `hardware.mig`: the profile each replica runs on, and the figures taken from the
    catalogue unless given (for hardware the catalogue lacks, give all three)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: str = Field(min_length=1)
    slices_per_gpu: int | None = Field(default=None, ge=1, description="replicas on one physical GPU")
    compute_share: float | None = Field(default=None, gt=0, le=1, description="the slice's share of the SMs")
    service_scale: float | None = Field(
        default=None, gt=0, description="batch time on the slice / on the whole GPU (default 1 / compute_share)"
    )

    @model_validator(mode="before")
    @classmethod
    def _profile_name(cls, data: Any) -> Any:
        return {"profile": data} if isinstance(data, str) else data

    @property
    def complete(self) -> bool:
        """Whether the run has every figure it needs (else `resolve_mig` fills them in)."""
        return None not in (self.slices_per_gpu, self.compute_share, self.service_scale)


def resolve_mig(wanted: MigSlice, hardware_name: str, profiles: MigProfiles | None) -> MigSlice:
    """`wanted` with what it leaves out taken from the catalogue's profile of that name.

    Raises a one-line `CapsimInputError` on `hardware.mig` when the GPU has no MIG profiles or not
    this one (listing those it has). Figures the scenario gives win; `service_scale` defaults to
    `mig_service_scale` of the profile's compute slices (or 1 / compute_share when given).
    """
    if profiles is None:
        if wanted.slices_per_gpu is not None and wanted.compute_share is not None:
            given = wanted.service_scale
            return wanted.model_copy(update={"service_scale": given if given is not None else 1 / wanted.compute_share})
        raise CapsimInputError(
            f"{hardware_name} has no MIG profiles in the catalogue (MIG runs on A100, H100 and H200; "
            "`capsim hardware NAME` lists them); for other hardware give slices_per_gpu and compute_share",
            field="hardware.mig",
        )
    profile = profiles.profiles.get(wanted.profile)
    if profile is None:
        known = ", ".join(profiles.profiles)
        raise CapsimInputError(f"{hardware_name} has no MIG profile '{wanted.profile}' (profiles: {known})",
                               field="hardware.mig.profile")  # fmt: skip
    share = wanted.compute_share
    if share is None:
        share = profile.compute_sevenths / COMPUTE_SLICES_PER_GPU
    if wanted.service_scale is not None:
        scale = wanted.service_scale
    elif wanted.compute_share is None:
        scale = mig_service_scale(profile.compute_sevenths)
    else:
        scale = 1.0 / share
    return wanted.model_copy(update={
        "slices_per_gpu": wanted.slices_per_gpu if wanted.slices_per_gpu is not None else profile.per_gpu,
        "compute_share": share,
        "service_scale": scale,
    })  # fmt: skip
