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


# How a notebook gets run: as a script (`python notebooks/x.py`), or as a Jupyter kernel does it —
# the cells' source executed with no `__file__`, so paths must not lean on either.
_AS_KERNEL = "import sys; exec(compile(open(sys.argv[1]).read(), 'notebook', 'exec'), {'__name__': '__main__'})"


def _run(notebook: Path, cwd: Path, as_kernel: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAPSIM_NOTEBOOK_FAST": "1", "MPLBACKEND": "Agg"}
    argv = [sys.executable, "-c", _AS_KERNEL, str(notebook)] if as_kernel else [sys.executable, str(notebook)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd, env=env, check=False)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_to_its_answer(notebook: Path) -> None:
    proc = _run(notebook, ROOT, as_kernel=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Answer:" in proc.stdout


@pytest.mark.parametrize("as_kernel", [False, True], ids=["script", "kernel"])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_from_any_directory(notebook: Path, as_kernel: bool, tmp_path: Path) -> None:
    """Run from an unrelated folder (and, like a kernel, without __file__): the same answer, and nothing
    written to the working directory."""
    proc = _run(notebook, tmp_path, as_kernel)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Answer:" in proc.stdout
    assert list(tmp_path.iterdir()) == []
