"""Move a measured service-time profile to other hardware with a roofline estimate.

A profile is measured on one hardware; `transfer_profile` predicts it on another. At each measured
batch size k, with m(k) the measured mean, R_src(k) and R_tgt(k) the roofline times
(`capsim.hardware.roofline`) and o a fixed overhead that does not depend on the device:

    predicted_mean(k) = o + (m(k) − o) × R_tgt(k) / R_src(k)
    factor(k)         = predicted_mean(k) / m(k)

and every measured quantile at k is multiplied by factor(k): the measured *shape* (every quantile
ratio, the coefficient of variation) is kept, the level moves. The part m − o is assumed to run at
the same fraction of peak on both devices, so that fraction cancels in the ratio.

The overhead o (kernel launches, framework dispatch, host work: what the roofline cannot explain)
is, unless given, the intercept of the least-squares line m(k) ≈ o + e × R_src(k) over the measured
batch sizes, clamped to [0, min m(k)]. With one batch size, or no spread in R_src, o = 0: the whole
time scales. The result's provenance records every factor and says `"extrapolated": true`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from capsim.errors import CapsimInputError
from capsim.hardware.catalogue import Catalogue
from capsim.hardware.roofline import ModelCost, check_fits, check_precision, roofline_time
from capsim.hardware.spec import PRECISION_COLUMN, HardwareSpec, Precision
from capsim.input_model import InputModel
from capsim.servicetime.profile_format import Profile, ProfilePoint

# Framework dtype names (torch, numpy, ONNX) → catalogue precision.
_DTYPE_PRECISION = {
    "float32": "fp32", "fp32": "fp32", "float": "fp32", "torch.float32": "fp32",
    "float16": "fp16", "fp16": "fp16", "half": "fp16", "torch.float16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16", "torch.bfloat16": "bf16",
    "int8": "int8", "qint8": "int8", "torch.qint8": "int8",
    "fp8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "torch.float8_e4m3fn": "fp8",
}  # fmt: skip


def profile_precision(profile: Profile) -> str | None:
    """The precision a profile was measured at, from its `framework.dtype`, if capsim recognizes it."""
    dtype = profile.framework.get("dtype")
    return _DTYPE_PRECISION.get(str(dtype).lower()) if dtype is not None else None


def estimate_overhead_s(means_s: np.ndarray, roofline_s: np.ndarray) -> float:
    """Fixed per-batch overhead: the intercept of means ≈ o + e × roofline, clamped to [0, min(means)].

    Returns 0 when the fit is not identifiable (fewer than two points, or no spread in roofline).
    """
    if means_s.size < 2 or np.ptp(roofline_s) <= 1e-12 * max(float(np.max(roofline_s)), 1e-300):
        return 0.0
    slope, intercept = np.polyfit(roofline_s, means_s, 1)
    if slope <= 0:
        # Time does not grow with the work: the measurement is all overhead as far as it shows.
        return float(np.min(means_s))
    return float(np.clip(intercept, 0.0, np.min(means_s)))


def measured_on(profile: Profile, catalogue: Catalogue, field: str = "hardware.source") -> HardwareSpec:
    """The catalogue entry a profile was measured on, from its `hardware.name` (loosely matched).

    A profile whose hardware is not in the catalogue (`cpu-2core` from a laptop) raises a one-line
    error: name the source hardware explicitly, or add an entry for it with --catalogue.
    """
    name = profile.hardware.get("name")
    if not name:
        raise CapsimInputError("the profile does not name its hardware; name the source hardware", field=field)
    return catalogue.get(str(name), field=field)


def is_extrapolated(profile: Profile) -> bool:
    """Whether a profile came from `transfer_profile` (the summary flags results computed from it)."""
    return bool(profile.provenance.get("extrapolated", False))


def transfer_profile(
    profile: Profile,
    source: HardwareSpec,
    target: HardwareSpec,
    model: ModelCost,
    precision: str,
    gpus: int = 1,
    scaling_efficiency: float = 0.9,
    *,
    source_precision: str | None = None,
    source_gpus: int = 1,
    overhead_s: float | None = None,
) -> Profile:
    """The profile `profile`, measured on `source`, predicted on `target` (see the module docstring).

    `precision` (fp32, fp16, bf16, int8, fp8) picks the target's throughput column; the source
    precision is `source_precision`, else the profile's `framework.dtype`, else `precision`. `gpus`
    and `scaling_efficiency` describe the target replica (tensor parallel); `source_gpus` the one
    measured, with the same efficiency. `overhead_s` fixes the overhead instead of estimating it
    (0 scales the whole time). A null catalogue figure that the estimate needs raises a one-line
    `CapsimInputError` naming it; so do weights that do not fit in the target's memory.
    """
    check_precision(precision)
    src_precision = source_precision or profile_precision(profile) or precision
    check_precision(src_precision, field="source_precision")
    if overhead_s is not None and overhead_s < 0:
        raise CapsimInputError(f"expected a number >= 0, got {overhead_s}", field="overhead_s")
    check_fits(model, target, precision, gpus)

    sizes = [p.batch_size for p in profile.points]
    try:
        src = [roofline_time(model, source, k, src_precision, source_gpus, scaling_efficiency) for k in sizes]
    except CapsimInputError as exc:
        if source_precision is None and profile_precision(profile) is None:
            # The caller never chose this precision for the source: say where it came from.
            hint = f" (the source precision defaulted to the target's, {precision}: give source_precision)"
            raise CapsimInputError(exc.detail + hint, source=exc.source, field=exc.field) from None
        raise
    tgt = [roofline_time(model, target, k, precision, gpus, scaling_efficiency) for k in sizes]
    means_s = np.array([p.mean_ms for p in profile.points]) / 1000.0
    src_s = np.array([r.time_s for r in src])
    overhead = estimate_overhead_s(means_s, src_s) if overhead_s is None else min(overhead_s, float(means_s.min()))

    points: list[ProfilePoint] = []
    factors: list[dict[str, Any]] = []
    for point, m, r_src, r_tgt in zip(profile.points, means_s, src, tgt, strict=True):
        ratio = r_tgt.time_s / r_src.time_s
        factor = (overhead + (m - overhead) * ratio) / m
        points.append(ProfilePoint(
            batch_size=point.batch_size, count=point.count, mean_ms=point.mean_ms * factor,
            quantiles_ms=[q * factor for q in point.quantiles_ms],
        ))  # fmt: skip
        factors.append({
            "batch_size": point.batch_size, "factor": factor, "roofline_ratio": ratio,
            "source_roofline_s": r_src.time_s, "source_bound": r_src.bound,
            "target_roofline_s": r_tgt.time_s, "target_bound": r_tgt.bound,
        })  # fmt: skip

    provenance = {
        "extrapolated": True,
        "method": "roofline transfer (capsim.servicetime.transfer, docs/hardware.md)",
        "source_hardware": source.name,
        "target_hardware": target.name,
        "precision": {"source": src_precision, "target": precision},
        "gpus_per_replica": {"source": source_gpus, "target": gpus},
        "scaling_efficiency": scaling_efficiency,
        "overhead_s": overhead,
        "overhead_estimated": overhead_s is None,
        # How much of the measured time the source roofline accounts for where it accounts for most:
        # far below 1, the time goes on launches and host work that no device figure predicts.
        "roofline_share": float(np.max(src_s / means_s)),
        "model_cost": model.model_dump(mode="json"),
        "factors": factors,
        "figures": {"source": _figures_used(source, src_precision), "target": _figures_used(target, precision)},
        "measured": {
            "hardware": profile.hardware,
            "source": profile.source,
            "created_utc": profile.created_utc,
            "provenance": profile.provenance,
        },
    }
    hardware = {"name": target.name, "kind": target.kind, "gpus_per_replica": gpus, "extrapolated_from": source.name}
    framework = {**profile.framework, "precision": precision}
    return profile.model_copy(update={
        "points": points, "hardware": hardware, "framework": framework, "provenance": provenance,
        "source": f"capsim transfer from {source.name}",
    })  # fmt: skip


def _figures_used(spec: HardwareSpec, precision: str) -> dict[str, Any]:
    """The catalogue figures behind an estimate, with their sources, for the provenance record."""
    out: dict[str, Any] = {}
    for name in (PRECISION_COLUMN[precision], "memory_bandwidth_gbps"):
        fig = getattr(spec, name)
        out[name] = {"value": fig.value, "source": fig.source, "date": fig.date, "confidence": fig.confidence}
    return out


class TransferSpec(InputModel):
    """A scenario's request to run a measured profile on other hardware (e.g. `service.transfer`).

    The target is the scenario's hardware; `source` names the measured hardware in the catalogue
    (default: the profile's own `hardware.name`). The other fields are `transfer_profile`'s.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str | None = None
    model: ModelCost | None = Field(
        default=None, description="the model's cost; default: the `model.cost` that `capsim profile` recorded"
    )
    precision: Precision = "fp16"
    source_precision: Precision | None = None
    gpus_per_replica: int = Field(default=1, ge=1)
    source_gpus: int = Field(default=1, ge=1)
    scaling_efficiency: float = Field(default=0.9, gt=0, le=1)
    overhead_ms: float | None = Field(default=None, ge=0, description="fixed per-batch overhead; null: estimate it")


def declared_cost(profile: Profile, field: str = "service.transfer.model") -> ModelCost:
    """The model cost a profile carries (`model.cost`, counted by `capsim profile`); a one-line error
    naming `field` when it has none, so the user knows to give the figures."""
    cost = profile.model.get("cost")
    if not isinstance(cost, dict):
        raise CapsimInputError("the profile records no model.cost: give flops_per_item, weight_bytes and "
                               "activation_bytes_per_item here", field=field)  # fmt: skip
    fields = {key: value for key, value in cost.items() if key in ModelCost.model_fields}
    try:
        return ModelCost.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise CapsimInputError(f"the profile's model.cost.{where}: {err['msg']}", field=field) from None


def apply_transfer(profile: Profile, spec: TransferSpec, target: HardwareSpec, catalogue: Catalogue,
                   field: str = "service.transfer") -> Profile:  # fmt: skip
    """`transfer_profile` driven by a `TransferSpec`, resolving the source hardware in `catalogue`."""
    source = (
        catalogue.get(spec.source, field=f"{field}.source")
        if spec.source is not None
        else measured_on(profile, catalogue, field=f"{field}.source")
    )
    model = spec.model if spec.model is not None else declared_cost(profile, field=f"{field}.model")
    return transfer_profile(
        profile, source, target, model, spec.precision, spec.gpus_per_replica, spec.scaling_efficiency,
        source_precision=spec.source_precision, source_gpus=spec.source_gpus,
        overhead_s=None if spec.overhead_ms is None else spec.overhead_ms / 1000.0,
    )  # fmt: skip
