"""Spot notice periods and interruption rates from the catalogue."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from capsim.errors import CapsimInputError
from capsim.hardware import (
    interruption_rate_per_s,
    load_catalogue,
    price_record,
    reclaimed_fraction_per_month,
    resolve_hardware,
    spot_interruption_rate_per_s,
    spot_notice_s,
    spot_provider,
)


def test_notice_periods_from_the_facts() -> None:
    cat = load_catalogue()
    assert spot_notice_s("aws", cat) == 120 and spot_notice_s("GCP", cat) == 30 and spot_notice_s("azure", cat) == 30
    assert cat.providers["aws"].spot_notice_s.confidence == "SRC"
    with pytest.raises(CapsimInputError, match=r"unknown provider 'oracle' \(known: aws, azure, gcp\)"):
        spot_notice_s("oracle", cat)


def test_interruption_rate_is_poisson_over_a_720_hour_month() -> None:
    # p = 0.175 reclaimed per month: survival exp(-λ × 720 h) = 0.825.
    rate = interruption_rate_per_s(0.175)
    assert math.exp(-rate * 720 * 3600) == pytest.approx(0.825)
    assert interruption_rate_per_s(0.0) == 0.0
    with pytest.raises(CapsimInputError, match="expected a fraction in"):
        interruption_rate_per_s(1.0)


def test_entry_figure_then_provider_default_then_error() -> None:
    cat = load_catalogue()
    h100 = cat.get("H100-SXM")
    assert reclaimed_fraction_per_month(h100, cat).date == "Feb 2026"
    assert spot_interruption_rate_per_s(h100, cat) == pytest.approx(interruption_rate_per_s(0.175))
    # T4 has no figure of its own: the AWS-wide "fewer than 5%" applies (its offer is on AWS).
    t4 = cat.get("T4")
    assert spot_provider(t4) == "aws" and reclaimed_fraction_per_month(t4, cat).value == 0.05
    # A10G's own facts conflict (<5% or 15-20%), so it gives no figure and the AWS-wide default applies.
    assert reclaimed_fraction_per_month(cat.get("A10G"), cat).value == 0.05
    with pytest.raises(CapsimInputError, match=r"^hardware\.spot_reclaimed_fraction_per_month: H100-NVL has no"):
        reclaimed_fraction_per_month(cat.get("H100-NVL"), cat)  # Azure: no frequency in the facts
    with pytest.raises(CapsimInputError, match="has no offers"):
        spot_provider(cat.get("B200"))
    own = resolve_hardware("B200", {"spot_reclaimed_fraction_per_month": 0.3}, cat)
    assert reclaimed_fraction_per_month(own, cat).confidence == "user"


def test_user_file_overrides_a_provider(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("providers:\n  azure: {spot_reclaimed_fraction_per_month: 0.1}\n  oci: {spot_notice_s: 120}\n")
    cat = load_catalogue(path)
    assert reclaimed_fraction_per_month(cat.get("H100-NVL"), cat).source == f"user catalogue {path}"
    assert cat.providers["azure"].spot_notice_s.value == 30 and spot_notice_s("oci", cat) == 120
    path.write_text("providers:\n  aws: {spot_notice_s: soon}\n")
    with pytest.raises(CapsimInputError, match=r"p\.yaml: providers\.aws\.spot_notice_s\.value: "):
        load_catalogue(path)


def test_price_record_carries_the_source() -> None:
    record = price_record(load_catalogue().get("A10G"), 1, "spot")
    assert record["usd_per_hour"] == 0.40 and record["unit"] == "GPU" and record["date"] == "2026"
    assert record["source"].startswith("aws g5.xlarge: AWS EC2 Spot pricing, https://aws.amazon.com/ec2/spot/pricing/")
    assert "cloudprice.app" in record["source"] and record["confidence"] == "3P"
