"""The calibration mechanisms' interface and registry (capsim/calibration/mechanism.py,
mechanisms.py): the registry's contract for every mechanism, and the fitting loop on stand-in
mechanisms whose results are known."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from capsim.calibration import mechanisms
from capsim.calibration.mechanism import PATCHABLE, Mechanism, quantile_log_error
from capsim.calibration.mechanisms import MECHANISMS, default_mechanisms, fit_mechanisms, merge_patch
from capsim.calibration.runfolder import LoadPoint
from capsim.scenario import RealtimeServing


def test_every_registered_mechanism_follows_what_it_requires() -> None:
    names = [m.name for m in MECHANISMS]
    assert len(set(names)) == len(names)
    for i, mechanism in enumerate(MECHANISMS):
        assert set(mechanism.requires) <= set(names[:i]), mechanism.name
        assert mechanism.title and mechanism.unfitted
    assert default_mechanisms() == {"frontend"}  # the late window is opt-in (docs/validation.md)


def test_quantile_log_error() -> None:
    measured = np.array([2.0, 5.0, 9.0])
    assert quantile_log_error(measured, measured) == 0.0
    assert quantile_log_error(measured * 1.1, measured) == pytest.approx(math.log(1.1) ** 2)
    # Below a microsecond times are clock noise: 0 and 1e-6 ms both count as 1e-3 ms.
    assert quantile_log_error(np.array([0.0, 5.0, 9.0]), np.array([1e-6, 5.0, 9.0])) == 0.0


def test_merge_patch_merges_mappings_and_later_values_win() -> None:
    front = {"frontend": {"workers": 1, "cv": 0.5}, "overhead_ms": 2.0}
    late = {"frontend": {"window_late_quantiles_ms": [0.0, 1.0], "cv": 0.7}}
    assert merge_patch(front, late) == {
        "frontend": {"workers": 1, "cv": 0.7, "window_late_quantiles_ms": [0.0, 1.0]}, "overhead_ms": 2.0}
    assert front == {"frontend": {"workers": 1, "cv": 0.5}, "overhead_ms": 2.0}  # inputs untouched


@dataclass(frozen=True)
class _Fitted:
    """A stand-in result: its error is the number of points it is asked about."""

    patch: dict[str, Any]

    def scenario_patch(self) -> dict[str, Any]:
        return self.patch

    def as_dict(self) -> dict[str, object]:
        return {"patch": self.patch}

    def describe(self) -> str:
        return f"fitted {sorted(self.patch)}"

    def error(self, points: list[LoadPoint]) -> float | None:
        return float(len(points))


def _mechanism(name: str, patch: dict[str, Any] | None, requires: tuple[str, ...] = ()) -> Mechanism:
    return Mechanism(name=name, title=f"the {name}", fit=lambda _points: None if patch is None else _Fitted(patch),
                     requires=requires, unfitted=f"no {name} in these runs")  # fmt: skip


FIT = [object(), object(), object()]  # the loop hands points to the mechanisms and never reads them
HELD_OUT = [object()]


def test_the_loop_merges_patches_records_errors_and_echoes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mechanisms, "MECHANISMS", (
        _mechanism("front", {"frontend": {"workers": 2}, "overhead_ms": 1.5}),
        _mechanism("late", {"frontend": {"window_late_quantiles_ms": [0.0, 3.0]}}, requires=("front",)),
    ))  # fmt: skip
    lines: list[str] = []
    fits = fit_mechanisms(FIT, HELD_OUT, {"front", "late"}, lines.append)  # type: ignore[arg-type]
    assert fits.serving_patch == {"frontend": {"workers": 2, "window_late_quantiles_ms": [0.0, 3.0]},
                                  "overhead_ms": 1.5}  # fmt: skip
    assert fits.detail["front"]["error"] == {"fit": 3.0, "holdout": 1.0}
    assert fits.detail["late"]["patch"] == {"frontend": {"window_late_quantiles_ms": [0.0, 3.0]}}
    assert lines == ["fitted ['frontend', 'overhead_ms']", "fitted ['frontend']"] and fits.warnings == []
    # No held-out points: no prediction error; a mechanism not asked for is not fitted.
    alone = fit_mechanisms(FIT, [], {"front"})  # type: ignore[arg-type]
    assert alone.detail["front"]["error"] == {"fit": 3.0, "holdout": None} and set(alone.detail) == {"front"}


def test_a_mechanism_without_what_it_builds_on_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mechanisms, "MECHANISMS", (
        _mechanism("front", None),
        _mechanism("late", {"frontend": {"window_late_quantiles_ms": [0.0, 3.0]}}, requires=("front",)),
    ))  # fmt: skip
    fits = fit_mechanisms(FIT, HELD_OUT, {"front", "late"})  # type: ignore[arg-type]
    assert fits.serving_patch == {} and fits.detail == {}
    assert fits.warnings == ["no front in these runs", "the late builds on the front, which was not fitted: it is "
                             "not modelled"]  # fmt: skip
    # Asked for alone, it still needs the one it builds on.
    assert fit_mechanisms(FIT, [], {"late"}).warnings == [  # type: ignore[arg-type]
        "the late builds on the front, which was not fitted: it is not modelled"]


def test_unknown_names_and_fields_the_replay_drops_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown calibration mechanism"):
        fit_mechanisms([], [], {"stalls"})
    monkeypatch.setattr(mechanisms, "MECHANISMS", (_mechanism("cache", {"cache": {"hit_ratio": 0.5}}),))
    with pytest.raises(ValueError, match="does not carry"):
        fit_mechanisms(FIT, [], {"cache"})  # type: ignore[arg-type]


def test_every_patchable_field_is_a_realtime_serving_field() -> None:
    # The replay sets these on a real-time scenario's serving section (calibration/replay.py).
    assert set(RealtimeServing.model_fields) >= PATCHABLE
