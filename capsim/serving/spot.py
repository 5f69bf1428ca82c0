"""Spot capacity: a share of the fleet on spot prices, interrupted by the provider.

Interruptions of each spot replica form a Poisson process. The rate comes either directly
(`interruptions_per_hour`) or from a monthly interruption probability p, as the AWS Spot Advisor
reports it: rate = −ln(1 − p) / 720 h (../shared/facts/serving-systems.md §9). An interrupted
replica gets the provider's notice (AWS 120 s, GCP and Azure 30 s): it leaves the load balancer at
once, its queued requests are re-sent to the other replicas (as a gateway retries them), its batches
in service finish, and a replacement starts its cold start immediately.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SpotCapacity(BaseModel):
    """`serving.spot`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fraction: float = Field(ge=0, le=1, description="share of replicas on spot capacity")
    usd_per_hour: float = Field(ge=0, description="spot price of one replica per hour")
    interruptions_per_hour: float | None = Field(default=None, ge=0)
    monthly_interruption_probability: float | None = Field(default=None, ge=0, lt=1)
    notice_s: float = Field(default=120.0, ge=0, description="AWS: 120 s; GCP and Azure: 30 s")

    @model_validator(mode="after")
    def _one_rate(self) -> SpotCapacity:
        given = (self.interruptions_per_hour is not None) + (self.monthly_interruption_probability is not None)
        if given != 1:
            raise ValueError("give exactly one of interruptions_per_hour or monthly_interruption_probability")
        return self

    @property
    def rate_per_s(self) -> float:
        """Interruptions per second of one spot replica."""
        if self.interruptions_per_hour is not None:
            return self.interruptions_per_hour / 3600.0
        p = self.monthly_interruption_probability or 0.0
        return -math.log1p(-p) / (720.0 * 3600.0)
