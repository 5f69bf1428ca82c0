"""Calibration reads only the inference requests of a run folder (the load tester's `kind`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim.calibration.runfolder import read_run_folder
from capsim.errors import CapsimInputError
from tests.calibration.synthetic import write_run_folder

SERVICE = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.05}
SERVER = {"max_batch_size": 4, "max_wait_ms": 1.0}


def _with_health_checks(run: Path, inference: bool = True) -> int:
    """Give every row a kind and add a fast health check beside every inference request."""
    rows = pd.read_parquet(run / "requests.parquet")
    n = len(rows)
    health = rows.assign(latency_ms=0.3, latency_corrected_ms=0.3, status=200, name="/v2/health/ready",
                         kind="other", server_queue_ms=np.nan, server_compute_ms=np.nan,
                         server_batch_size=pd.NA)
    rows = rows.assign(kind="inference" if inference else "other")
    pd.concat([rows, health], ignore_index=True).to_parquet(run / "requests.parquet", index=False)
    return n


def test_health_checks_are_not_load_points(tmp_path: Path) -> None:
    run = write_run_folder(tmp_path / "run", [40.0], service=SERVICE, server=SERVER, overhead_ms=0.5,
                           duration_s=10.0, warmup_s=1.0)
    n = _with_health_checks(run)
    (point,) = read_run_folder(run)
    assert len(point.requests) == n
    assert set(point.requests["name"]) == {"/predict/synthetic"}
    assert point.requests["latency_ms"].min() > 1.0  # no 0.3 ms health check left to pull the fit down


def test_a_folder_without_inference_requests_says_how_to_mark_them(tmp_path: Path) -> None:
    run = write_run_folder(tmp_path / "run", [40.0], service=SERVICE, server=SERVER, overhead_ms=0.5,
                           duration_s=10.0, warmup_s=1.0)
    _with_health_checks(run, inference=False)
    with pytest.raises(CapsimInputError, match="--inference-name") as info:
        read_run_folder(run)
    assert info.value.field == "kind" and info.value.source.endswith("requests.parquet")
