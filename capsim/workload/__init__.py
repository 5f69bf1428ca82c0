"""Arrival processes: when requests arrive. Pure numpy, shared by the simulator and the load tester."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from capsim.workload.base import ArrivalProcess
from capsim.workload.modulated import DiurnalArrival, MmppArrival, RateStep, StepsArrival
from capsim.workload.renewal import ConstantArrival, GammaArrival, PoissonArrival
from capsim.workload.trace import TraceArrival

ArrivalSpec = Annotated[
    PoissonArrival | ConstantArrival | GammaArrival | MmppArrival | StepsArrival | DiurnalArrival | TraceArrival,
    Field(discriminator="kind"),
]

__all__ = [
    "ArrivalProcess",
    "ArrivalSpec",
    "ConstantArrival",
    "DiurnalArrival",
    "GammaArrival",
    "MmppArrival",
    "PoissonArrival",
    "RateStep",
    "StepsArrival",
    "TraceArrival",
]
