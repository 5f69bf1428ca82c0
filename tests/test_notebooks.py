"""Every worked analysis in notebooks/ runs to its answer (docs/design.md: notebooks are executed by the test suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_to_its_answer(notebook: Path) -> None:
    env = {**os.environ, "CAPSIM_NOTEBOOK_FAST": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(notebook)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Answer:" in proc.stdout
