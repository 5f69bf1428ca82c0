"""Service-time models: how long one batch takes on one executor."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from capsim.servicetime.base import BatchSampler, ServiceTimeModel
from capsim.servicetime.llm_service import LlmFittedService, LlmLinearService, LlmRooflineService
from capsim.servicetime.parametric import DeterministicService, ExponentialService, LinearService, LognormalService
from capsim.servicetime.profile import ProfileService
from capsim.servicetime.profile_format import Profile, ProfilePoint, read_profile

ServiceSpec = Annotated[
    DeterministicService
    | ExponentialService
    | LognormalService
    | LinearService
    | ProfileService
    | LlmLinearService
    | LlmRooflineService
    | LlmFittedService,
    Field(discriminator="kind"),
]

__all__ = [
    "BatchSampler",
    "DeterministicService",
    "ExponentialService",
    "LinearService",
    "LlmFittedService",
    "LlmLinearService",
    "LlmRooflineService",
    "LognormalService",
    "Profile",
    "ProfilePoint",
    "ProfileService",
    "ServiceSpec",
    "ServiceTimeModel",
    "read_profile",
]
