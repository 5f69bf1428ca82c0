"""The hardware catalogue (a shipped data file with a source for every figure), roofline estimates,
and price / energy arithmetic. See docs/hardware.md."""

from __future__ import annotations

from capsim.hardware.catalogue import Catalogue, load_catalogue, normalize_name, resolve_hardware
from capsim.hardware.cost import (
    energy_j,
    energy_kwh,
    energy_usd,
    find_offer,
    power_w,
    replica_usd_per_hour,
    spot_discount,
    unit_usd_per_hour,
)
from capsim.hardware.roofline import ModelCost, RooflineTime, roofline_time
from capsim.hardware.spec import PRECISION_COLUMN, Figure, HardwareSpec, PriceOffer, Provenance

__all__ = [
    "PRECISION_COLUMN",
    "Catalogue",
    "Figure",
    "HardwareSpec",
    "ModelCost",
    "PriceOffer",
    "Provenance",
    "RooflineTime",
    "energy_j",
    "energy_kwh",
    "energy_usd",
    "find_offer",
    "load_catalogue",
    "normalize_name",
    "power_w",
    "replica_usd_per_hour",
    "resolve_hardware",
    "roofline_time",
    "spot_discount",
    "unit_usd_per_hour",
]
