"""The hand-written t quantile (capsim.metrics.summary.t95) against scipy's exact one."""

from __future__ import annotations

import math

import pytest

from capsim.metrics.summary import t95

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("dfs", "rel"), [(range(1, 31), 2.5e-4), (range(31, 5000, 7), 1e-6)])
def test_t95_agrees_with_scipy(dfs: range, rel: float) -> None:
    for df in dfs:
        assert t95(df) == pytest.approx(stats.t.ppf(0.975, df), rel=rel), df


def test_t95_is_nan_without_degrees_of_freedom() -> None:
    assert math.isnan(t95(0))
    assert t95(10**9) == pytest.approx(1.959964, abs=1e-6)
