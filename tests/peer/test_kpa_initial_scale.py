"""Knative's initial scale: GetInitialScale (resources/decider_test.go TestGetInitialScale) and the
scaler's bounds before the scale target is initialized (scaler_test.go TestScaler), ported.

Upstream's scaler takes the decider's desired scale and the PodAutoscaler's status (whether its scale
target has been initialized) and applies min / max / initial-scale bounds; capsim's
`KpaState.apply_bounds(desired, ready)` does the same with the initialization in
`KpaState.scale_target_initialized` (set there once `ready` reaches the initial scale).
"""

from __future__ import annotations

from typing import Any

import pytest

from capsim.autoscale.kpa import KpaPolicy, KpaState
from tests.peer.upstream import KNATIVE_DECIDER, KNATIVE_SCALER

# (name, initial-scale annotation or None, allow-zero-initial-scale, expected initial scale)
INITIAL_SCALE = [
    ("revision initial scale not set", None, False, 1),
    ("revision initial scale overrides cluster initial scale", 2, False, 2),
    ("cluster allows initial scale zero", 0, True, 0),
]


def kpa(**spec: Any) -> KpaPolicy:
    return KpaPolicy.model_validate({"max_replicas": 100, **spec})


@pytest.mark.parametrize(
    ("annotation", "allow_zero", "expected"),
    [pytest.param(*row[1:], id=KNATIVE_DECIDER.cite(f"TestGetInitialScale/{row[0]}")) for row in INITIAL_SCALE],
)
def test_initial_scale(annotation: int | None, allow_zero: bool, expected: int) -> None:
    spec: dict[str, Any] = {"allow_zero_initial_scale": allow_zero}
    if annotation is not None:
        spec["initial_scale"] = annotation
    assert kpa(**spec).initial_scale == expected


NOT_ALLOWED = "TestGetInitialScale/cluster does not allows initial scale zero"


@pytest.mark.parametrize("annotation", [pytest.param(0, id=KNATIVE_DECIDER.cite(NOT_ALLOWED))])
def test_zero_initial_scale_needs_the_cluster_setting(annotation: int) -> None:
    # Upstream's GetInitialScale falls back to the cluster's 1 for an annotation of 0 that the cluster
    # does not allow; its webhook (annotation_validation.go validateInitialScale) refuses such a
    # revision in the first place, and so does capsim.
    with pytest.raises(ValueError, match="allow_zero_initial_scale"):
        kpa(initial_scale=annotation)


# TestScaler rows: (label, startReplicas, scaleTo, initial-scale annotation, allow zero, wantReplicas);
# the PodAutoscaler is activating / inactive, its scale target not yet initialized.
SCALER = [
    ("haven't scaled to initial scale, override desired scale with initial scale", 0, 1, 2, False, 2),
    ("initial scale reached for the first time", 5, 1, 5, False, 5),
    ("reaching initial scale zero", 0, 0, 0, True, 0),
]


@pytest.mark.parametrize(
    ("start", "scale_to", "initial", "allow_zero", "want"),
    [pytest.param(*row[1:], id=KNATIVE_SCALER.cite(f"TestScaler/{row[0]}")) for row in SCALER],
)
def test_scaler_bounds_before_initialization(
    start: int, scale_to: int, initial: int, allow_zero: bool, want: int
) -> None:
    state = KpaState(kpa(initial_scale=initial, allow_zero_initial_scale=allow_zero))
    assert not state.scale_target_initialized
    assert state.apply_bounds(scale_to, start) == want
    # computeActiveCondition: the target is initialized once its ready pods reach the initial scale.
    assert state.scale_target_initialized == (start >= initial)
