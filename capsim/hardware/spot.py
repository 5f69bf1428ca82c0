"""Spot capacity figures for the engine: the provider's notice period and an interruption rate.

The sources (docs/sources.md#spot-interruptions) give interruption frequencies as the fraction p of
spot instances reclaimed over a month (the AWS Spot Instance Advisor buckets). Modelled as a Poisson
process, an instance survives a month with probability 1 − p = exp(−λ × 720 h), so
λ = −ln(1 − p) / 720 h. A month is 720 hours (30 days), the sources' convention. Each entry may give
its own fraction; otherwise the provider's default applies (AWS: fewer than 5% across all instance
types).
"""

from __future__ import annotations

import math

from capsim.errors import CapsimInputError
from capsim.hardware.catalogue import Catalogue
from capsim.hardware.spec import Figure, HardwareSpec

HOURS_PER_MONTH = 720.0


def interruption_rate_per_s(reclaimed_fraction_per_month: float) -> float:
    """Poisson rate (per second) at which one instance is interrupted, from the monthly fraction."""
    if not 0.0 <= reclaimed_fraction_per_month < 1.0:
        raise CapsimInputError(f"expected a fraction in [0, 1), got {reclaimed_fraction_per_month}",
                               field="spot_reclaimed_fraction_per_month")  # fmt: skip
    return -math.log1p(-reclaimed_fraction_per_month) / (HOURS_PER_MONTH * 3600.0)


def spot_provider(spec: HardwareSpec) -> str:
    """The provider of the entry's first spot offer (else its first offer): where spot is bought."""
    offers = [o for o in spec.offers if o.market == "spot"] or spec.offers
    if not offers:
        raise CapsimInputError(f"{spec.name} has no offers, so its cloud provider is unknown; name the provider",
                               field="hardware.offers")  # fmt: skip
    return offers[0].provider


def spot_notice_s(provider: str, catalogue: Catalogue) -> float:
    """Seconds of notice before a spot instance of `provider` is terminated (AWS 120, GCP and Azure 30)."""
    spec = catalogue.providers.get(provider.lower())
    if spec is None:
        known = ", ".join(sorted(catalogue.providers)) or "none"
        raise CapsimInputError(f"unknown provider '{provider}' (known: {known})", field="spot.provider")
    if spec.spot_notice_s.value is None:
        raise CapsimInputError(f"the catalogue has no spot notice for '{provider}'; set it with --catalogue",
                               field=f"providers.{provider}.spot_notice_s")  # fmt: skip
    return spec.spot_notice_s.value


def reclaimed_fraction_per_month(spec: HardwareSpec, catalogue: Catalogue, provider: str | None = None) -> Figure:
    """The monthly reclaimed fraction for `spec`, with its provenance: the entry's own figure, else
    the provider default. A one-line error names the figure when neither exists."""
    if spec.spot_reclaimed_fraction_per_month.value is not None:
        return spec.spot_reclaimed_fraction_per_month
    provider = (provider or spot_provider(spec)).lower()
    default = catalogue.providers.get(provider)
    if default is not None and default.spot_reclaimed_fraction_per_month.value is not None:
        return default.spot_reclaimed_fraction_per_month
    why = f" ({spec.spot_reclaimed_fraction_per_month.note})" if spec.spot_reclaimed_fraction_per_month.note else ""
    raise CapsimInputError(
        f"{spec.name} has no spot_reclaimed_fraction_per_month and provider '{provider}' no default{why}; "
        "set it inline or with --catalogue",
        field="hardware.spot_reclaimed_fraction_per_month",
    )


def spot_interruption_rate_per_s(spec: HardwareSpec, catalogue: Catalogue, provider: str | None = None) -> float:
    """Poisson interruption rate per second of one spot instance of `spec` (see the module docstring)."""
    figure = reclaimed_fraction_per_month(spec, catalogue, provider)
    assert figure.value is not None  # reclaimed_fraction_per_month returns only figures with values
    return interruption_rate_per_s(figure.value)
