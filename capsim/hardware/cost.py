"""Price and energy arithmetic on catalogue entries: small pure functions for the engine to call.

Prices are per catalogue unit (one GPU for kind gpu, one instance for kind cpu); a replica of
`gpus` GPUs costs `gpus` units. Energy follows a linear power model: a device draws its idle power
when idle and its TDP when busy, so at utilization u it draws `idle + (TDP - idle) × u`. TDP is an
upper bound on real draw (inference rarely holds a GPU at its power limit), so energy figures are
conservative; the idle figure is a catalogue estimate unless the entry gives a measured one.

Every serving mode (real-time, streaming, async, batch jobs) prices its billed replica-seconds with
`billed_cost` and accounts its energy with `replica_energy`, so the rules live here once.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from capsim.errors import CapsimInputError
from capsim.hardware.spec import DEFAULT_IDLE_FRACTION_OF_TDP, HardwareSpec, PriceOffer

PriceMarket = Literal["on_demand", "spot"]
J_PER_KWH = 3.6e6
HOURS_PER_MONTH = 730.0
"""A month of always-on billing: 8,760 hours a year over 12, the convention of cloud price lists (AWS and
Google Cloud quote monthly estimates at 730 hours)."""


def unit_usd_per_hour(spec: HardwareSpec, market: PriceMarket = "on_demand") -> float:
    """Price of one GPU (kind gpu) or one instance (kind cpu) per hour in `market`.

    Raises a one-line `CapsimInputError` naming `hardware.<market>_usd_per_hour` when the catalogue
    has no such price (docs/sources.md gives no spot price for most GPUs).
    """
    field = "on_demand_usd_per_hour" if market == "on_demand" else "spot_usd_per_hour"
    return spec.require(field, f"{market.replace('_', '-')} cost")


def replica_usd_per_hour(spec: HardwareSpec, gpus_per_replica: int = 1, market: PriceMarket = "on_demand") -> float:
    """Price of one replica per hour: `gpus_per_replica` GPUs, or one instance for a CPU entry."""
    if gpus_per_replica < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {gpus_per_replica}", field="gpus_per_replica")
    if spec.kind == "cpu" and gpus_per_replica != 1:
        raise CapsimInputError(f"{spec.name} is a CPU instance type; a replica is one instance",
                               field="gpus_per_replica")  # fmt: skip
    units = gpus_per_replica if spec.kind == "gpu" else 1
    return units * unit_usd_per_hour(spec, market)


def price_record(spec: HardwareSpec, gpus_per_replica: int = 1, market: PriceMarket = "on_demand") -> dict[str, Any]:
    """A replica's price with its provenance, for a run summary: what was charged and on whose word."""
    figure = spec.on_demand_usd_per_hour if market == "on_demand" else spec.spot_usd_per_hour
    return {
        "hardware": spec.name,
        "market": market,
        "usd_per_hour": replica_usd_per_hour(spec, gpus_per_replica, market),
        "unit": "GPU" if spec.kind == "gpu" else "instance",
        "units": gpus_per_replica if spec.kind == "gpu" else 1,
        "unit_usd_per_hour": figure.value,
        "source": figure.source,
        "date": figure.date,
        "confidence": figure.confidence,
    }


def monthly_usd(usd_per_hour: float, hours_per_month: float = HOURS_PER_MONTH) -> float:
    """A cost rate per hour as a monthly bill: `usd_per_hour × hours_per_month` (730 h by default)."""
    return usd_per_hour * hours_per_month


def spot_discount(spec: HardwareSpec) -> float:
    """Fraction saved by spot over on-demand (0.8 means 80% off); needs both prices."""
    on_demand = unit_usd_per_hour(spec, "on_demand")
    return 1.0 - unit_usd_per_hour(spec, "spot") / on_demand if on_demand > 0 else 0.0


def find_offer(spec: HardwareSpec, instance_type: str, market: str = "on_demand") -> PriceOffer:
    """The offer for `instance_type` in `market` (case-insensitive), or a one-line error listing them."""
    for offer in spec.offers:
        if offer.instance_type.lower() == instance_type.lower() and offer.market == market:
            return offer
    known = ", ".join(f"{o.instance_type} ({o.market})" for o in spec.offers) or "none"
    raise CapsimInputError(f"{spec.name} has no {market} offer for '{instance_type}' (offers: {known})",
                           field="hardware.instance_type")  # fmt: skip


def power_w(utilization: float, spec: HardwareSpec, gpus: int = 1) -> float:
    """Power draw at `utilization` (busy fraction, 0..1) of `gpus` devices: idle + (TDP − idle) × u."""
    if not 0.0 <= utilization <= 1.0:
        raise ValueError(f"utilization must be in [0, 1], got {utilization}")
    tdp = spec.require("tdp_w", "energy")
    idle = spec.require("idle_power_w", "energy")
    return gpus * (idle + (tdp - idle) * utilization)


def energy_j(busy_s: float, idle_s: float, spec: HardwareSpec, gpus: int = 1) -> float:
    """Energy in joules of `gpus` devices busy for `busy_s` and idle for `idle_s` seconds.

    Equals `power_w(u) × (busy_s + idle_s)` with `u = busy_s / (busy_s + idle_s)`: busy time at TDP,
    idle time at the idle floor. Provisioning time (billed, model not loaded) counts as idle.
    """
    if busy_s < 0 or idle_s < 0:
        raise ValueError("busy_s and idle_s must be >= 0")
    tdp = spec.require("tdp_w", "energy")
    idle = spec.require("idle_power_w", "energy")
    return gpus * linear_energy_j(tdp, idle, busy_s, idle_s)


def linear_energy_j(tdp_w: float, idle_w: float, busy_s: float, idle_s: float) -> float:
    """The linear power model's energy: `busy_s` at `tdp_w` plus `idle_s` at `idle_w`, in joules."""
    return tdp_w * busy_s + idle_w * idle_s


def energy_kwh(energy_joules: float) -> float:
    """Joules to kilowatt-hours."""
    return energy_joules / J_PER_KWH


def energy_usd(energy_joules: float, usd_per_kwh: float) -> float:
    """Electricity cost of `energy_joules` at `usd_per_kwh` (a scenario setting; no default price)."""
    if usd_per_kwh < 0:
        raise ValueError("usd_per_kwh must be >= 0")
    return energy_kwh(energy_joules) * usd_per_kwh


class ReplicaPower(Protocol):
    """A scenario's `hardware` block as the energy account reads it (per replica, filled in from the
    catalogue at validation where the scenario leaves them out)."""

    @property
    def tdp_w(self) -> float | None: ...
    @property
    def idle_w(self) -> float | None: ...
    @property
    def usd_per_kwh(self) -> float | None: ...


def replica_idle_w(hardware: ReplicaPower) -> float:
    """A replica's idle draw: the scenario's or the catalogue's `idle_w`, else the catalogue's
    default share of TDP (`DEFAULT_IDLE_FRACTION_OF_TDP`, an estimate: set hardware.idle_w from a
    measured idle draw for real numbers). Needs `tdp_w`."""
    assert hardware.tdp_w is not None
    return hardware.idle_w if hardware.idle_w is not None else DEFAULT_IDLE_FRACTION_OF_TDP * hardware.tdp_w


def replica_energy(
    hardware: ReplicaPower, billed_replica_s: float, busy_replica_s: float, window_s: float | None = None
) -> dict[str, float] | None:
    """The energy block of a run summary, or None when the hardware has no TDP.

    A billed replica draws its idle power, and its TDP while busy (`busy_replica_s` replica-seconds,
    part of `billed_replica_s`); a replica still starting is billed and idle. Gives `joules`, `kwh`,
    `usd` when the scenario sets an electricity price, and `mean_power_w` over `window_s` if given.
    """
    if hardware.tdp_w is None:
        return None
    idle_w = replica_idle_w(hardware)
    joules = linear_energy_j(hardware.tdp_w, idle_w, busy_replica_s, billed_replica_s - busy_replica_s)
    result = {"joules": joules, "kwh": energy_kwh(joules)}
    if window_s is not None:
        result["mean_power_w"] = joules / window_s
    if hardware.usd_per_kwh is not None:
        result["usd"] = energy_usd(joules, hardware.usd_per_kwh)
    return result


def billed_cost(
    usd_per_hour: float | None, on_demand_replica_s: float, spot_replica_s: float = 0.0, spot_usd_per_hour: float = 0.0
) -> dict[str, float]:
    """The cost block of a run summary: billed replica-seconds at the on-demand and spot prices per
    replica-hour (provisioning is billed too). `usd_per_hour` is filled in from the catalogue at
    validation; None here is a bug upstream."""
    assert usd_per_hour is not None, "hardware.usd_per_hour is filled in at validation"
    on_demand_usd = on_demand_replica_s / 3600.0 * usd_per_hour
    spot_usd = spot_replica_s / 3600.0 * spot_usd_per_hour if spot_replica_s else 0.0
    return {"usd": on_demand_usd + spot_usd, "on_demand_usd": on_demand_usd, "spot_usd": spot_usd}


def gpus_for_slices(replicas: int, slices_per_gpu: int) -> int:
    """Physical GPUs billed for `replicas` MIG slices at `slices_per_gpu` slices per GPU:
    ceil(replicas / slices_per_gpu). The cloud rents whole GPUs, so a GPU with one slice in use is
    billed in full (7 replicas on 1g.10gb slices of an A100-80GB: 1 GPU; 8: 2). Replicas are taken as
    packed onto as few GPUs as possible at every instant (a lower bound: a scheduler that leaves
    scaled-down GPUs part-used pays for them until they empty)."""
    if replicas < 0 or slices_per_gpu < 1:
        raise ValueError(f"expected replicas >= 0 and slices_per_gpu >= 1, got {replicas}, {slices_per_gpu}")
    return -(-replicas // slices_per_gpu)


def usd_per_million(usd: float, count: float) -> float:
    """What a million units cost — requests, input tokens or output tokens — when `count` of them
    cost `usd` in all: usd / count × 10⁶ (NaN when there were none). The one rule behind every
    summary's `usd_per_million_*` figures."""
    return usd / count * 1e6 if count else math.nan
