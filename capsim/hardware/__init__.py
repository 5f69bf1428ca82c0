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
    price_record,
    replica_usd_per_hour,
    spot_discount,
    unit_usd_per_hour,
)
from capsim.hardware.roofline import ModelCost, RooflineTime, roofline_time
from capsim.hardware.spec import PRECISION_COLUMN, Figure, HardwareSpec, PriceOffer, Provenance, ProviderSpec
from capsim.hardware.spot import (
    interruption_rate_per_s,
    reclaimed_fraction_per_month,
    spot_interruption_rate_per_s,
    spot_notice_s,
    spot_provider,
)

__all__ = [
    "PRECISION_COLUMN",
    "Catalogue",
    "Figure",
    "HardwareSpec",
    "ModelCost",
    "PriceOffer",
    "Provenance",
    "ProviderSpec",
    "RooflineTime",
    "energy_j",
    "energy_kwh",
    "energy_usd",
    "find_offer",
    "interruption_rate_per_s",
    "load_catalogue",
    "normalize_name",
    "power_w",
    "price_record",
    "reclaimed_fraction_per_month",
    "replica_usd_per_hour",
    "resolve_hardware",
    "roofline_time",
    "spot_discount",
    "spot_interruption_rate_per_s",
    "spot_notice_s",
    "spot_provider",
    "unit_usd_per_hour",
]
