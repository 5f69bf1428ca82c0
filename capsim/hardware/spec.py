"""The hardware entry: figures that carry their own source, price offers, and the derived unit prices.

A `Figure` is a number (or null) with its provenance: where it comes from, the date exactly as the
source gives it, and a confidence tag (see the catalogue file's header). Null figures are honest
gaps: `HardwareSpec.require(field)` raises a one-line `CapsimInputError` naming the figure when a
computation needs it, instead of guessing.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from capsim.errors import CapsimInputError
from capsim.hardware.mig import MigProfiles
from capsim.input_model import InputModel

Confidence = Literal["SRC", "DOC2", "3P", "MEM", "unverified", "estimate", "user"]
Market = Literal["on_demand", "spot", "capacity_block"]
Precision = Literal["fp32", "fp16", "bf16", "int8", "fp8"]

# Which catalogue column gives the peak throughput at each precision. BF16 shares the FP16 tensor
# column because NVIDIA's datasheets (docs/sources.md#gpu-and-cpu-figures) quote them together.
PRECISION_COLUMN: dict[str, str] = {
    "fp32": "fp32_tflops",
    "fp16": "fp16_tflops",
    "bf16": "fp16_tflops",
    "int8": "int8_tops",
    "fp8": "fp8_tflops",
}
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}

# The figures every entry has (null when unknown), in display order.
FIGURE_FIELDS: tuple[str, ...] = (
    "memory_gb", "memory_bandwidth_gbps", "fp32_tflops", "fp16_tflops", "int8_tops", "fp8_tflops",
    "tdp_w", "idle_power_w", "vcpus", "on_demand_usd_per_hour", "spot_usd_per_hour",
    "spot_reclaimed_fraction_per_month",
)  # fmt: skip
PROVIDER_FIGURE_FIELDS: tuple[str, ...] = ("spot_notice_s", "spot_reclaimed_fraction_per_month")

DEFAULT_IDLE_FRACTION_OF_TDP = 0.15
"""Idle draw as a share of TDP where nothing gives one: the shipped catalogue's assumption
(`assumptions.idle_fraction_of_tdp` in catalogue.yaml; a test keeps the two equal). Not in the
sources: an idle GPU with a model loaded draws a small fraction of its TDP."""


def _date_text(value: Any) -> Any:
    """YAML reads `2026-06-01` as a date; the catalogue keeps dates as the source wrote them."""
    return value.isoformat() if isinstance(value, _dt.date) else value


def expand_figures(
    entry: dict[str, Any], default: dict[str, Any], fields: tuple[str, ...] = FIGURE_FIELDS
) -> dict[str, Any]:
    """Turn bare numbers into figure mappings and fill missing provenance from `default`.

    `tdp_w: 70` means a figure from `default` (an entry's `spec_source`, or "user catalogue FILE"
    for a user file); a mapping with a value but no source takes the default's keys too. The loader
    calls this per layer before merging, so an override never inherits the shipped entry's source.
    """
    out = dict(entry)
    for name in fields:
        if name not in out:
            continue
        raw = out[name]
        if not isinstance(raw, dict):  # a bare number (or a wrong scalar: the error then names `.value`)
            raw = {"value": raw}
        if isinstance(raw, dict) and raw.get("value") is not None:
            raw = {**{k: v for k, v in default.items() if k not in raw}, **raw}
        out[name] = raw
    return out


class Provenance(InputModel):
    """Where a group of figures comes from (an entry's `spec_source`)."""

    model_config = ConfigDict(extra="forbid")
    source: str
    date: str | None = None
    confidence: Confidence

    _date = field_validator("date", mode="before")(_date_text)


class Figure(InputModel):
    """One number with its source, date and confidence; `value` is null where no source gives one."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = None
    source: str | None = None
    date: str | None = None
    confidence: Confidence | None = None
    note: str | None = None
    range: tuple[float, float] | None = Field(
        default=None, strict=False, description="low and high where the source gives a range"
    )  # strict=False: YAML gives a list; the numbers in it stay strict

    _date = field_validator("date", mode="before")(_date_text)

    @model_validator(mode="after")
    def _sourced(self) -> Figure:
        if self.value is not None and (self.source is None or self.confidence is None):
            raise ValueError("a figure with a value needs a source and a confidence")
        if self.value is not None and self.value < 0:
            raise ValueError("must be >= 0")
        return self


class PriceOffer(InputModel):
    """One way to buy the hardware: a cloud instance type at a market price, with its source."""

    model_config = ConfigDict(extra="forbid")
    provider: str
    instance_type: str
    gpus: int | None = Field(default=None, ge=1, description="GPUs per instance; null for CPU instances")
    market: Market
    usd_per_hour: float | None = Field(default=None, ge=0, description="price of the whole instance")
    usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    range_usd_per_hour: tuple[float, float] | None = Field(default=None, strict=False)  # a YAML list
    range_usd_per_gpu_hour: tuple[float, float] | None = Field(default=None, strict=False)
    region: str | None = None
    source: str
    date: str | None = None
    confidence: Confidence
    note: str | None = None

    _date = field_validator("date", mode="before")(_date_text)

    @model_validator(mode="after")
    def _priced(self) -> PriceOffer:
        if self.usd_per_hour is None and self.usd_per_gpu_hour is None:
            raise ValueError("an offer needs usd_per_hour or usd_per_gpu_hour")
        if self.usd_per_gpu_hour is not None and self.gpus is None:
            raise ValueError("usd_per_gpu_hour needs gpus")
        return self

    def unit_usd_per_hour(self, kind: str) -> float:
        """Price of one catalogue unit: one GPU for kind gpu, the whole instance for kind cpu."""
        if kind == "cpu" or self.gpus is None:
            assert self.usd_per_hour is not None  # guaranteed by _priced for CPU offers
            return self.usd_per_hour
        if self.usd_per_gpu_hour is not None:
            return self.usd_per_gpu_hour
        assert self.usd_per_hour is not None
        return self.usd_per_hour / self.gpus


class ProviderSpec(InputModel):
    """Per-cloud facts that apply to every entry bought there: the spot notice period, and the
    fraction of spot instances reclaimed per month for entries that give none of their own."""

    model_config = ConfigDict(extra="forbid")
    name: str
    spot_notice_s: Figure = Field(default_factory=Figure)
    spot_reclaimed_fraction_per_month: Figure = Field(default_factory=Figure)

    @model_validator(mode="before")
    @classmethod
    def _expand_bare_numbers(cls, data: Any) -> Any:
        return expand_figures(data, {}, PROVIDER_FIGURE_FIELDS) if isinstance(data, dict) else data


class HardwareSpec(InputModel):
    """One catalogue entry: a GPU (figures per GPU) or a CPU instance type (figures per instance).

    Units: `memory_gb` in 1e9 bytes, `memory_bandwidth_gbps` in GB/s, `*_tflops` / `int8_tops` dense
    (no 2:4 sparsity) in 1e12 operations per second, watts, USD per hour. The unit prices are per GPU
    for kind gpu and per instance for kind cpu; unless given they come from the first offer of that
    market. `idle_power_w` defaults to the catalogue's idle fraction × TDP, marked `estimate`.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["gpu", "cpu"]
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    spec_source: Provenance | None = None
    memory_gb: Figure = Field(default_factory=Figure)
    memory_bandwidth_gbps: Figure = Field(default_factory=Figure)
    fp32_tflops: Figure = Field(default_factory=Figure)
    fp16_tflops: Figure = Field(default_factory=Figure)
    int8_tops: Figure = Field(default_factory=Figure)
    fp8_tflops: Figure = Field(default_factory=Figure)
    tdp_w: Figure = Field(default_factory=Figure)
    idle_power_w: Figure = Field(default_factory=Figure)
    vcpus: Figure = Field(default_factory=Figure)
    on_demand_usd_per_hour: Figure = Field(default_factory=Figure)
    spot_usd_per_hour: Figure = Field(default_factory=Figure)
    spot_reclaimed_fraction_per_month: Figure = Field(default_factory=Figure)
    offers: list[PriceOffer] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    mig: MigProfiles | None = Field(default=None, description="MIG partition profiles (capsim.hardware.mig)")
    idle_fraction_of_tdp: float = Field(
        default=DEFAULT_IDLE_FRACTION_OF_TDP, ge=0, le=1, description="used only to derive idle_power_w"
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_bare_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        default = data.get("spec_source")
        return expand_figures(data, dict(default) if isinstance(default, dict) else {})

    @model_validator(mode="after")
    def _derive(self) -> HardwareSpec:
        for market, field in (("on_demand", "on_demand_usd_per_hour"), ("spot", "spot_usd_per_hour")):
            if getattr(self, field).value is not None:
                continue
            offer = next((o for o in self.offers if o.market == market), None)
            if offer is None:
                continue
            unit = "GPU" if self.kind == "gpu" else "instance"
            note = f"per {unit}, from the first {market} offer" + (f"; {offer.note}" if offer.note else "")
            figure = Figure(
                value=offer.unit_usd_per_hour(self.kind),
                source=f"{offer.provider} {offer.instance_type}: {offer.source}",
                date=offer.date,
                confidence=offer.confidence,
                note=note,
            )
            setattr(self, field, figure)
        if self.idle_power_w.value is None and self.tdp_w.value is not None:
            self.idle_power_w = Figure(
                value=self.idle_fraction_of_tdp * self.tdp_w.value,
                source=f"capsim assumption: idle power = {self.idle_fraction_of_tdp:g} × TDP (not in the sources)",
                confidence="estimate",
                note="measure idle draw (nvidia-smi) and set idle_power_w for real numbers",
            )
        return self

    def require(self, field: str, purpose: str) -> float:
        """The value of figure `field`, or a one-line error naming it when the catalogue has none."""
        figure: Figure = getattr(self, field)
        if figure.value is None:
            why = f" ({figure.note})" if figure.note else ""
            raise CapsimInputError(
                f"{self.name} has no {field} in the catalogue{why}; {purpose} needs it: "
                f"set it inline or add it with --catalogue FILE",
                field=f"hardware.{field}",
            )
        return figure.value

    def figures(self) -> dict[str, Figure]:
        """Every figure by field name, in display order."""
        return {name: getattr(self, name) for name in FIGURE_FIELDS}
