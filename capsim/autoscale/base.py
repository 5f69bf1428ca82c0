"""What every autoscaling policy spec shares: replica bounds that must make sense."""

from __future__ import annotations

from pydantic import ConfigDict, model_validator

from capsim.input_model import InputModel


class PolicyBase(InputModel):
    """Base of the policy specs; subclasses give `min_replicas` / `max_replicas` their own defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_replicas: int
    max_replicas: int

    def llm_only_metrics(self) -> list[str]:
        """The metrics this policy reads that only LLM engines give (refused on other fleets)."""
        return []

    def refuse_llm_only_metrics(self) -> None:
        """Raise ValueError naming an LLM-only metric (for the schemas of fleets that are not LLM engines)."""
        names = self.llm_only_metrics()
        if names:
            raise ValueError(f"autoscaling metric {names[0]!r} is read from LLM engines only (serving.mode: llm)")

    @model_validator(mode="after")
    def _bounds(self) -> PolicyBase:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self
