"""Golden tests: each bundled scenario reproduces its committed summary exactly (same seed, same
numbers). A change that moves them is either a bug or a deliberate model change — then regenerate
with `python tests/golden/regenerate.py` and explain the diff in the commit."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.golden.golden_runs import GOLDEN_DIR, OVERRIDES, golden_summary, scenario_paths


def assert_same(actual: Any, expected: Any, where: str = "summary") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: keys differ"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: length differs"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        # Bit-for-bit on one machine; the tolerance only absorbs libm differences across platforms.
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def test_every_bundled_scenario_has_a_golden_run() -> None:
    stems = {p.stem for p in scenario_paths()}
    assert stems == set(OVERRIDES), "add new scenarios to tests/golden/golden_runs.py and regenerate"
    assert stems == {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert len(stems) >= 4


@pytest.mark.parametrize("path", scenario_paths(), ids=lambda p: p.stem)
def test_scenario_matches_golden_summary(path: Path) -> None:
    record = json.loads((GOLDEN_DIR / f"{path.stem}.json").read_text())
    assert record["overrides"] == OVERRIDES[path.stem]
    summary = json.loads(json.dumps(golden_summary(path)))  # through JSON, as committed
    assert_same(summary, record["summary"])
