"""Spot capacity: a share of the fleet on spot prices, interrupted by the provider.

Interruptions of each spot replica form a Poisson process. The rate comes either directly
(`interruptions_per_hour`) or from a monthly interruption probability p, as the AWS Spot Advisor
reports it: rate = −ln(1 − p) / 720 h (docs/sources.md#spot-interruptions). An interrupted
replica gets the provider's notice (AWS 120 s, GCP and Azure 30 s): it leaves the load balancer at
once, its queued requests are re-sent to the other replicas (as a gateway retries them), its batches
in service finish, and a replacement starts its cold start immediately.

Figures left out are taken from the hardware catalogue when the scenario is loaded (see
`capsim.scenario`): the spot price of the replica's hardware, its monthly reclaimed fraction (or the
provider's default), and the provider's notice period.
"""

from __future__ import annotations

import math

from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel


class SpotCapacity(InputModel):
    """`serving.spot`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fraction: float = Field(ge=0, le=1, description="share of replicas on spot capacity")
    usd_per_hour: float | None = Field(
        default=None, ge=0, description="spot price of one replica per hour (default: the catalogue's spot price)"
    )
    interruptions_per_hour: float | None = Field(default=None, ge=0)
    monthly_interruption_probability: float | None = Field(
        default=None, ge=0, lt=1, description="default: the catalogue's reclaimed fraction per month"
    )
    provider: str | None = Field(
        default=None, min_length=1, description="cloud whose notice applies (default: the hardware's spot offer's)"
    )
    notice_s: float = Field(default=120.0, ge=0, description="default: the provider's (AWS 120 s; GCP, Azure 30 s)")

    @model_validator(mode="after")
    def _at_most_one_rate(self) -> SpotCapacity:
        if self.interruptions_per_hour is not None and self.monthly_interruption_probability is not None:
            raise ValueError("give one of interruptions_per_hour or monthly_interruption_probability, not both")
        return self

    @property
    def rate_known(self) -> bool:
        """Whether the file gave an interruption rate (else the catalogue supplies one)."""
        return self.interruptions_per_hour is not None or self.monthly_interruption_probability is not None

    @property
    def rate_per_s(self) -> float:
        """Interruptions per second of one spot replica."""
        if self.interruptions_per_hour is not None:
            return self.interruptions_per_hour / 3600.0
        if self.monthly_interruption_probability is None:
            raise ValueError("serving.spot has no interruption rate: the scenario was not loaded with its catalogue")
        return -math.log1p(-self.monthly_interruption_probability) / (720.0 * 3600.0)

    @property
    def price_usd_per_hour(self) -> float:
        """Spot price of one replica per hour (filled from the catalogue when the file gives none)."""
        if self.usd_per_hour is None:
            raise ValueError("serving.spot has no price: the scenario was not loaded with its catalogue")
        return self.usd_per_hour
