"""Autoscaling: policies (small pure decide functions with their own memory) and the controller
process that applies them to a fleet."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from capsim.autoscale.hpa import HpaPolicy
from capsim.autoscale.keda import KedaPolicy
from capsim.autoscale.kpa import KpaPolicy
from capsim.autoscale.ray_serve import RayServePolicy
from capsim.autoscale.schedule import ScheduleWindow, schedule_floor

AutoscalingSpec = Annotated[HpaPolicy | KpaPolicy | KedaPolicy | RayServePolicy, Field(discriminator="kind")]

__all__ = [
    "AutoscalingSpec",
    "HpaPolicy",
    "KedaPolicy",
    "KpaPolicy",
    "RayServePolicy",
    "ScheduleWindow",
    "schedule_floor",
]
