"""The scenario's `plan:` section: the space `capsim plan` searches when the command line leaves it out.

```yaml
plan:
  hardware:                          # candidate hardware (each like serving.search.hardware's entries)
    - {name: T4}
    - {name: L4, service: {kind: linear, base_ms: 3, per_item_ms: 0.4}}
  max_wait_ms: [0, 2, 5]             # batching windows to try
  max_replicas: 32                   # upper bound of the searched replica count
```

Lives in the scenario package (it imports only the batch schema's `HardwareCandidate`): the planner
(capsim.plan) imports the scenario package, never the reverse.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel
from capsim.serving.batchjob.schema import HardwareCandidate

DEFAULT_MAX_REPLICAS = 64
"""Upper bound of the searched replica count (or an autoscaler's `max_replicas`) when none is given."""


class PlanSpec(InputModel):
    """`plan:`: candidate hardware, batching windows and the replica bound for `capsim plan`.
    Command-line flags (`--hardware`, `--max-wait-ms`, `--max-replicas`) take precedence."""

    model_config = ConfigDict(frozen=True)

    hardware: list[HardwareCandidate] = Field(
        default_factory=list, description="candidate hardware; empty: the scenario's own hardware only"
    )
    max_wait_ms: list[float] = Field(default_factory=list, description="batching windows to try (ms)")
    max_replicas: int = Field(default=DEFAULT_MAX_REPLICAS, ge=1, description="upper bound of the searched count")

    @model_validator(mode="after")
    def _distinct(self) -> PlanSpec:
        names = [candidate.name for candidate in self.hardware]
        if len(set(names)) != len(names):
            raise ValueError("a hardware name is listed twice")
        if any(w < 0 for w in self.max_wait_ms) or len(set(self.max_wait_ms)) != len(self.max_wait_ms):
            raise ValueError("max_wait_ms: expected distinct values >= 0")
        return self
