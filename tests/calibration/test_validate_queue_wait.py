"""`capsim validate` compares the same queue wait on both sides.

The "server" has a front end (one worker, 2 ms per request) before its batcher. Its `X-Queue-Ms`
counts from the batcher's queue entry, after the front end; the simulator's batch start − arrival
counts from the send, front end included. Compared as they were, the simulated queue wait read
several times the measured one on a replay that reproduced the latency well; now both sides count
from the send (batch-log queue entry − send + `X-Queue-Ms` on the measured side), and only a replay
without the front end misses it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from capsim.calibration import calibrate
from capsim.calibration.compare import QUEUE_TO_BATCH, SEND_TO_BATCH, simulated_stats
from capsim.calibration.replay import ReplayWorkspace, replay
from capsim.calibration.runfolder import read_run_folder
from capsim.calibration.validate import validate_run
from tests.calibration.synthetic import write_run_folder

SERVICE = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.2}
SERVER = {"max_batch_size": 8, "max_wait_ms": 2.0}
FRONTEND = {"workers": 1, "per_request_ms": 2.0, "cv": 0.0}
RATES_RPS = [150.0, 420.0]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("qw")
    run = write_run_folder(folder / "run", RATES_RPS, service=SERVICE, server=SERVER, overhead_ms=1.5,
                           duration_s=20.0, frontend=FRONTEND)  # fmt: skip
    profile = folder / "p.json"
    calibrate([run], replications=1).profile.write(profile)
    return run, profile


def test_queue_wait_counts_from_the_send_on_both_sides(profiled: tuple[Path, Path]) -> None:
    run, profile = profiled
    rows = validate_run(run, profile, replications=1).document["points"]
    for row in rows:
        assert row["queue_wait_basis"] == SEND_TO_BATCH
        measured = row["measured"]["queue_wait_ms"]
        # The front end's 2 ms is in the measured figure now, not only in the simulated one.
        assert measured["p50"] > FRONTEND["per_request_ms"] + 1.0
        assert abs(row["relative_error"]["queue_wait_ms.p50"]) < 0.05
        assert abs(row["relative_error"]["queue_wait_ms.p99"]) < 0.10
    # X-Queue-Ms alone (the batcher's queue) is what the measured side used to be: the front end short.
    requests = pd.read_parquet(run / "requests.parquet")
    for step, row in enumerate(rows):
        batcher_ms = requests.loc[requests["step"] == step, "server_queue_ms"].median()
        assert batcher_ms < row["measured"]["queue_wait_ms"]["p50"] - 0.9 * FRONTEND["per_request_ms"]


def test_a_replay_without_the_front_end_misses_its_queue_wait(profiled: tuple[Path, Path]) -> None:
    run, profile = profiled
    rows = validate_run(run, profile, replications=1, frontend=False).document["points"]
    heavy = {row["rate_rps"]: row for row in rows}[420.0]
    assert heavy["queue_wait_basis"] == SEND_TO_BATCH
    assert heavy["relative_error"]["queue_wait_ms.p50"] < -0.3


def test_without_queue_entry_times_only_the_batchers_queue_is_compared(tmp_path: Path) -> None:
    run = write_run_folder(tmp_path / "run", [200.0], service=SERVICE, server=SERVER, overhead_ms=1.5,
                           duration_s=20.0)  # fmt: skip
    profile = tmp_path / "p.json"
    calibrate([run], replications=1).profile.write(profile)
    batches = pd.read_parquet(run / "batches.parquet")
    batches.drop(columns=["arrival_s"]).to_parquet(run / "batches.parquet", index=False)
    [row] = validate_run(run, profile, replications=1).document["points"]
    assert row["queue_wait_basis"] == QUEUE_TO_BATCH
    assert abs(row["relative_error"]["queue_wait_ms.p50"]) < 0.10


def test_the_front_end_replay_without_queue_entries_compares_no_queue_wait(profiled: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    run, profile = profiled
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("manifest.json", "summary.json", "requests.parquet"):
        (copy / name).write_bytes((run / name).read_bytes())
    pd.read_parquet(run / "batches.parquet").drop(columns=["arrival_s"]).to_parquet(copy / "batches.parquet")
    for row in validate_run(copy, profile, replications=1).document["points"]:
        assert row["queue_wait_basis"] is None
        assert row["measured"]["queue_wait_ms"] is None and row["simulated"]["queue_wait_ms"] is None
        assert row["relative_error"]["queue_wait_ms.p50"] is None


def test_the_network_hop_in_is_put_back_before_the_batch_start(profiled: tuple[Path, Path]) -> None:
    run, _ = profiled
    point = read_run_folder(run)[0]
    with ReplayWorkspace() as workspace:
        sim = replay(point, SERVICE, 1.0, workspace, frontend=FRONTEND)
    plain = simulated_stats(point, sim, SEND_TO_BATCH)["queue_wait_ms"]
    hop = simulated_stats(point, sim, SEND_TO_BATCH, in_hop_ms=0.25)["queue_wait_ms"]
    assert hop["p50"] == pytest.approx(plain["p50"] + 0.25)
    batcher_only = simulated_stats(point, sim, QUEUE_TO_BATCH, in_hop_ms=0.25)["queue_wait_ms"]
    assert batcher_only["p50"] == pytest.approx(plain["p50"])
