"""The registry of calibration mechanisms (the interface is mechanism.py) and the one loop that fits
them for `capsim calibrate`.

Adding a mechanism is one module that defines its `MECHANISM`, its test, and its line here. Each is
fitted on the fit points after the ones it `requires`; what it fitted is echoed, recorded in the
provenance under `fit_detail[name]` with its error on the fit points (`error.fit`, a residual) and on
the held-out points (`error.holdout`, a prediction error; null when there are none or they do not
show the mechanism), and its `serving` fields are merged into the patch the replays use.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from capsim.calibration import frontend_fit, lateness_fit
from capsim.calibration.mechanism import PATCHABLE, Fitted, Mechanism
from capsim.calibration.runfolder import LoadPoint

MECHANISMS: tuple[Mechanism, ...] = (frontend_fit.MECHANISM, lateness_fit.MECHANISM)
"""Every mechanism, each after those it requires."""


@dataclass
class MechanismFits:
    """What the mechanisms fitted together: the merged `serving` patch, the provenance entries by
    name, and warnings for those asked for and not fitted."""

    serving_patch: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, dict[str, object]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def default_mechanisms() -> set[str]:
    """The names of the mechanisms fitted unless the caller says otherwise."""
    return {m.name for m in MECHANISMS if m.default}


def merge_patch(patch: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`patch` with `extra` merged in, mapping into mapping (a later value wins on the same key)."""
    merged = dict(patch)
    for key, value in extra.items():
        old = merged.get(key)
        merged[key] = merge_patch(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def fit_mechanisms(
    fit_points: list[LoadPoint], holdout_points: list[LoadPoint], wanted: Collection[str],
    echo: Callable[[str], None] = lambda _: None,
) -> MechanismFits:  # fmt: skip
    """Fit the `wanted` mechanisms (by name) on `fit_points`; their errors on both sets of points."""
    unknown = set(wanted) - {m.name for m in MECHANISMS}
    if unknown:
        raise ValueError(f"unknown calibration mechanism(s): {', '.join(sorted(unknown))}")
    result = MechanismFits()
    fitted: dict[str, Fitted] = {}
    titles = {m.name: m.title for m in MECHANISMS}
    for mechanism in MECHANISMS:
        if mechanism.name not in wanted:
            continue
        missing = [titles[name] for name in mechanism.requires if name not in fitted]
        if missing:
            result.warnings.append(f"{mechanism.title} builds on {' and '.join(missing)}, which was not fitted: "
                                   "it is not modelled")  # fmt: skip
            continue
        found = mechanism.fit(fit_points)
        if found is None:
            if mechanism.unfitted:
                result.warnings.append(mechanism.unfitted)
            continue
        patch = found.scenario_patch()
        if not set(patch) <= PATCHABLE:  # a programming error: the replay would drop the field
            raise ValueError(f"{mechanism.name} sets serving fields the replay does not carry: {sorted(patch)}")
        fitted[mechanism.name] = found
        echo(found.describe())
        error = {"fit": found.error(fit_points), "holdout": found.error(holdout_points) if holdout_points else None}
        result.detail[mechanism.name] = {**found.as_dict(), "error": error}
        result.serving_patch = merge_patch(result.serving_patch, patch)
    return result
