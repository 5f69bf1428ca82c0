"""How a new replica comes to serve: node provisioning (unless a warm node is free), image pull and
model load, each a duration distribution; and what happens to requests while none is ready."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from capsim.distributions import DurationSpec, FixedDuration, UniformDuration
from capsim.input_model import InputModel


class ColdStart(InputModel):
    """`serving.cold_start`. Defaults are mid-range figures from docs/sources.md#cold-starts: a GPU VM takes
    60–180 s to launch and boot; pulling an ML image and loading weights take a minute and more."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provisioning_s: DurationSpec = UniformDuration(low_s=60, high_s=180)
    image_pull_s: DurationSpec = FixedDuration(value_s=60)
    model_load_s: DurationSpec = FixedDuration(value_s=20)
    warm_pool: int = Field(default=0, ge=0, description="spare nodes kept running: a replica on one skips provisioning")


class ZeroReplicas(InputModel):
    """`serving.zero_replicas`: requests that arrive while no replica is ready wait in the activator
    (Knative's, or a gateway's buffer) until one is, or are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["buffer", "reject"] = "buffer"
    buffer_capacity: int | None = Field(default=None, ge=0, description="requests the activator holds (null: no limit)")
