"""KEDA's fallback (pkg/fallback/fallback_test.go and TestCheckFallbackValid), ported.

Upstream's GetMetricsWithFallback takes one fetch's result (metrics or an error), the ScaledObject's
fallback and its health status (numberOfFailures); capsim's `KedaState.metric_with_fallback(value,
current)` takes the fetch's value (None: it failed) and the scale target's replicas, with the
consecutive failures in `KedaState.failures`. Upstream's metric spec is an AverageValue target, as
capsim's KEDA trigger always is.
"""

from __future__ import annotations

from typing import Any

import pytest

from capsim.autoscale.keda import KedaPolicy, KedaState
from tests.peer.upstream import KEDA_FALLBACK, KEDA_SCALEDOBJECT

SHOULD = "fallback/should "

# (It, fallback (failureThreshold, replicas, behavior) or None, AverageValue target, starting failures,
#  fetched value (None: error), current replicas, expected metric (None: the error), expected
#  failures, fallback active)
CASES: list[tuple[str, tuple[int, int, str] | None, float, int, float | None, int, float | None, int, bool]] = [
    ("return the expected metric when fallback is disabled", None, 3, 0, 5, 1, 5, 0, False),
    ("initialise the health status on success when fallback is enabled and status is empty",
     (3, 10, "static"), 3, 0, 6, 1, 6, 0, False),
    ("reset the health status when scaler metrics are available when fallback is enabled",
     (3, 10, "static"), 3, 5, 6, 1, 6, 0, False),
    ("not reset the health status when fallback is not enabled", None, 3, 5, 6, 1, 6, 5, False),
    ("propagate the error when fallback is disabled", None, 3, 0, None, 1, None, 0, False),
    ("bump the number of failures when metrics call fails", (3, 10, "static"), 10, 0, None, 1, None, 1, False),
    ("return a normalised metric when number of failures are beyond threshold",
     (3, 10, "static"), 10, 3, None, 1, 100, 4, True),
    ("use fallback replicas when current replicas is lower when behavior is 'currentReplicasIfHigher'",
     (3, 10, "current_replicas_if_higher"), 10, 3, None, 4, 100, 4, True),
    ("use current replicas when behavior is 'currentReplicas'", (3, 10, "current_replicas"), 10, 3, None, 6, 60, 4,
     True),
    ("ignore current replicas when behavior is 'static'", (3, 10, "static"), 10, 3, None, 15, 100, 4, True),
]  # fmt: skip


def policy(fallback: tuple[int, int, str] | None, target: float) -> KedaPolicy:
    settings: dict[str, Any] = {"target": target}
    if fallback is not None:
        threshold, replicas, behavior = fallback
        settings["fallback"] = {"failure_threshold": threshold, "replicas": replicas, "behavior": behavior}
    return KedaPolicy.model_validate(settings)


@pytest.mark.parametrize(
    ("fallback", "target", "failures", "value", "current", "metric", "failures_after", "active"),
    [pytest.param(*row[1:], id=KEDA_FALLBACK.cite(SHOULD + row[0])) for row in CASES],
)
def test_metrics_with_fallback(
    fallback: tuple[int, int, str] | None,
    target: float,
    failures: int,
    value: float | None,
    current: int,
    metric: float | None,
    failures_after: int,
    active: bool,
) -> None:
    state = KedaState(policy(fallback, target))
    state.failures = failures
    assert state.metric_with_fallback(value, current) == (metric, active)
    assert state.failures == failures_after


# Negative fields: upstream's GetMetricsWithFallback returns the error (HasValidFallback) and
# CheckFallbackValid refuses the ScaledObject; capsim refuses the scenario when it is read.
INVALID = [
    (KEDA_FALLBACK, SHOULD + "return error when fallback is enabled but scaledobject has invalid parameter", -3, 10),
    (KEDA_SCALEDOBJECT, "TestCheckFallbackValid/Negative FailureThreshold - invalid", -1, 1),
    (KEDA_SCALEDOBJECT, "TestCheckFallbackValid/Negative Replicas - invalid", 3, -1),
]


@pytest.mark.parametrize(("threshold", "replicas"), [pytest.param(*row[2:], id=row[0].cite(row[1])) for row in INVALID])
def test_negative_fallback_is_refused(threshold: int, replicas: int) -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        KedaPolicy.model_validate({"target": 3, "fallback": {"failure_threshold": threshold, "replicas": replicas}})


VALID = ("Explicit AverageValue metricType - valid", "Implicit AverageValue metricType (empty string) - valid")


@pytest.mark.parametrize(
    "name", [pytest.param(n, id=KEDA_SCALEDOBJECT.cite(f"TestCheckFallbackValid/{n}")) for n in VALID]
)
def test_average_value_fallback_is_valid(name: str) -> None:
    # Both rows are a non-cpu trigger with an AverageValue target, which capsim's KEDA trigger always is.
    fallback = KedaPolicy.model_validate({"target": 3, "fallback": {"failure_threshold": 3, "replicas": 1}}).fallback
    assert fallback is not None
    assert (fallback.failure_threshold, fallback.replicas, fallback.behavior) == (3, 1, "static")


# scaleExecutor.RequestScale (pkg/scaling/executor/scale_scaledobjects.go @8b4f083): an inactive poll
# in error with fallback.replicas != 0 scales straight to them (doFallbackScaling), before any
# cooldown; without a fallback (or with replicas 0) the error poll is an ordinary inactive one.
@pytest.mark.parametrize(
    ("fallback", "current", "expected"),
    [({"failure_threshold": 3, "replicas": 5}, 2, 5), ({"failure_threshold": 3, "replicas": 0}, 2, 0), (None, 2, 0)],
)
def test_error_poll_scales_to_fallback_replicas(fallback: dict[str, int] | None, current: int, expected: int) -> None:
    settings: dict[str, Any] = {"target": 3, "fallback": fallback}
    state = KedaState(KedaPolicy.model_validate(settings))
    assert state.request_scale(60.0, current, active=False, error=True) == expected
    assert state.last_active_s is None
