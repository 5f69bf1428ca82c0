"""What every autoscaling policy spec shares: replica bounds that must make sense."""

from __future__ import annotations

from pydantic import ConfigDict, model_validator

from capsim.input_model import InputModel


class PolicyBase(InputModel):
    """Base of the policy specs; subclasses give `min_replicas` / `max_replicas` their own defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_replicas: int
    max_replicas: int

    @model_validator(mode="after")
    def _bounds(self) -> PolicyBase:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self
