"""End-to-end checks of `capsim loadtest` against the reference server, both as real subprocesses
on 127.0.0.1, at small rates. No assertion depends on the machine being fast: rates are far below
what either side can do, and bounds are wide where timing enters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CAPSIM = [sys.executable, "-m", "capsim.cli.main", "loadtest"]


def start_reference_server(*extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m reference_server` on a free port; returns the process and its base URL."""
    args = [sys.executable, "-m", "reference_server", "--model", "mlp", "--port", "0", "--max-batch-size", "8",
            "--max-wait-ms", "0", "--instances", "1", "--queue-capacity", "10000", "--timeout-ms", "0",
            "--device", "cpu", "--torch-threads", "1", "--no-nvml", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    url = None
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
        if line.strip().endswith("ready"):
            break
    if url is None:
        proc.kill()
        pytest.fail("reference server did not start")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start_reference_server("--debug-endpoints")
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    # 150 ms per batch of up to 16: about 100 req/s of capacity, far above the 40 req/s sent.
    proc, url = start_reference_server("--extra-latency-ms", "150", "--max-batch-size", "16")
    yield url
    stop(proc)


def loadtest(out: Path, url: str, *flags: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAPSIM, "--target", url, "--out", str(out), *flags], capture_output=True, text=True,
                          timeout=timeout_s, cwd=REPO)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_open_loop_holds_the_rate_while_the_server_is_slow(tmp_path: Path, slow_server: str) -> None:
    out = tmp_path / "run"
    done = loadtest(out, slow_server, "--model", "mlp", "--arrival", "constant", "--rate", "40", "--duration", "8",
                    "--warmup", "2", "--window", "2")
    assert done.returncode == 0, done.stderr
    s = summary(out)
    assert abs(s["achieved_rps"] - 40) / 40 < 0.05
    assert s["requests"]["completed"] == s["requests"]["arrived"] == s["requests"]["scheduled"]
    assert s["latency_uncorrected_ms"]["p50"] >= 150  # the server really was slow
    # The run folder has what calibration reads.
    for name in ("manifest.json", "requests.parquet", "telemetry.parquet", "batches.parquet"):
        assert (out / name).is_file(), name
    assert pq.read_table(out / "batches.parquet").num_rows > 0
    assert pq.read_table(out / "telemetry.parquet").num_rows > 0
    # Summary percentiles (HDR histograms merged across workers) agree with the raw rows within 1%.
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    assert rows.server_batch_size.notna().all() and rows.server_compute_ms.notna().all()  # from X-* headers
    assert "requested_output_tokens" not in rows.columns  # the streamed-LLM columns only in LLM runs
    measured = rows[(rows.intended_s >= s["start_s"] + 2) & (rows.status == 200)]
    for key, pct in (("p50", 50), ("p99", 99)):
        exact = float(np.percentile(measured.latency_corrected_ms, pct, method="inverted_cdf"))
        assert s["latency_ms"][key] == pytest.approx(exact, rel=0.01)


def test_stall_shows_in_corrected_p99_only(tmp_path: Path, server: str) -> None:
    """One request in flight at most (like a closed-loop client): during a 2 s stall the schedule
    backs up. Measured from the intended send the stall is in the tail; from the actual send it
    hits one request only (under 1%), so the uncorrected p99 misses it: coordinated omission."""
    out = tmp_path / "run"
    flags = ["--model", "mlp", "--arrival", "constant", "--rate", "40", "--duration", "10", "--warmup", "1",
             "--window", "1", "--max-in-flight", "1"]
    proc = subprocess.Popen([*CAPSIM, "--target", server, "--out", str(out), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    coordinator = out / "parts" / "step-00" / "coordinator.json"
    deadline = time.monotonic() + 60
    while not coordinator.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    start_s = json.loads(coordinator.read_text())["start_s"]
    time.sleep(max(start_s + 4.0 - time.time(), 0.0))
    requests.post(f"{server}/debug/stall", params={"seconds": 2.0}, timeout=5).raise_for_status()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    s = summary(out)
    assert s["latency_ms"]["p99"] >= 1000.0
    assert s["latency_uncorrected_ms"]["p99"] < 500.0
    assert s["latency_uncorrected_ms"]["max"] >= 1500.0  # the one request that sat through the stall
    assert s["generator"]["cap_hits"] > 0 and not s["valid"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_a_readable_partial_folder(tmp_path: Path, server: str, sig: int) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([*CAPSIM, "--target", server, "--out", str(out), "--model", "mlp", "--rate", "30",
                             "--duration", "120", "--warmup", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    parts = out / "parts" / "step-00"
    deadline = time.monotonic() + 60
    while not list(parts.glob("requests-w*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    s = summary(out)
    assert s["partial"] is True
    table = pq.read_table(out / "requests.parquet")
    assert table.num_rows > 0
    assert s["requests"]["arrived"] > 0
    assert json.loads((out / "manifest.json").read_text())["target"]["url"] == server
    pq.read_table(out / "telemetry.parquet")


def test_distributed_workers_split_the_schedule(tmp_path: Path, server: str) -> None:
    out = tmp_path / "run"
    done = loadtest(out, server, "--model", "mlp", "--protocol", "kserve", "--rate", "40", "--duration", "5",
                    "--warmup", "1", "--workers", "2")
    assert done.returncode == 0, done.stderr
    s = summary(out)
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    assert sorted(rows.worker.unique()) == [0, 1]
    assert s["generator"]["workers"] == 2
    assert s["requests"]["arrived"] == s["requests"]["scheduled"]
    assert s["histogram_source"] == "workers"


def test_pooled_sender_records_the_same_way(tmp_path: Path, server: str) -> None:
    """The geventhttpclient path (used for https) against the same server, forced by environment."""
    out = tmp_path / "run"
    env = {**os.environ, "CAPSIM_OPEN_LOOP_SENDER": "pooled"}
    done = subprocess.run([*CAPSIM, "--target", server, "--out", str(out), "--model", "mlp", "--rate", "30",
                           "--duration", "4", "--warmup", "1"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    s = summary(out)
    assert s["generator"]["sender"] == ["PooledSender"]
    assert s["requests"]["completed"] == s["requests"]["scheduled"] > 0
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    assert rows.server_batch_size.notna().all()


def test_closed_loop_and_own_locustfile(tmp_path: Path, server: str) -> None:
    done = loadtest(tmp_path / "closed", server, "--model", "mlp", "--closed-loop", "--users", "2",
                    "--think-time-ms", "20", "--duration", "4", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    assert summary(tmp_path / "closed")["requests"]["completed"] > 0
    closed_rows = pq.read_table(tmp_path / "closed" / "requests.parquet").to_pandas()
    assert closed_rows.server_batch_size.notna().all()  # headers read through Locust's request event too
    team = tmp_path / "team_locustfile.py"
    team.write_text(
        "from locust import FastHttpUser, constant, task\n\n"
        "class Team(FastHttpUser):\n"
        "    wait_time = constant(0.05)\n\n"
        "    @task\n"
        "    def predict(self):\n"
        "        self.client.post('/predict/mlp', json={'inputs': [0.5] * 64}, name='team-predict')\n"
    )
    done = loadtest(tmp_path / "custom", server, "--locustfile", str(team), "--users", "2", "--duration", "4",
                    "--warmup", "1")
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "custom" / "requests.parquet").to_pandas()
    assert len(rows) > 0 and set(rows.name) == {"team-predict"}


def test_sweep_writes_one_curve(tmp_path: Path, server: str) -> None:
    out = tmp_path / "run"
    done = loadtest(out, server, "--model", "mlp", "--sweep", "20,40", "--duration", "4", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    s = summary(out)
    assert [p["rate_rps"] for p in s["curve"]] == [20.0, 40.0]
    assert len(s["steps"]) == 2
    steps = pq.read_table(out / "requests.parquet").column("step").to_pylist()
    assert set(steps) == {0, 1}


def test_unreachable_target_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    done = loadtest(tmp_path / "run", "http://127.0.0.1:9", "--model", "mlp", "--rate", "5", timeout_s=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--target" in lines[0] and "cannot connect" in lines[0]
    assert time.monotonic() - started < 20
    assert not (tmp_path / "run").exists()




def test_a_killed_run_can_be_finalized(tmp_path: Path, server: str) -> None:
    """SIGKILL gives capsim no chance to merge: the parts stay, Locust notices its parent is gone and
    stops, and `capsim loadtest-finalize` turns the folder into a partial run."""
    out = tmp_path / "run"
    proc = subprocess.Popen([*CAPSIM, "--target", server, "--out", str(out), "--model", "mlp", "--rate", "30",
                             "--duration", "120", "--warmup", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    parts = out / "parts" / "step-00"
    deadline = time.monotonic() + 60
    while len(list(parts.glob("requests-w*.parquet"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)  # a few seconds of rows, past the 1 s warm-up
    assert json.loads((out / "summary.json").read_text())["status"] == "running"
    proc.kill()
    proc.wait()
    # The Locust master writes the last rows it gets and exits within a few seconds.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = sorted(p.name for p in parts.glob("*"))
        time.sleep(2.5)
        if sorted(p.name for p in parts.glob("*")) == before:
            break
    done = subprocess.run([sys.executable, "-m", "capsim.cli.main", "loadtest-finalize", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    s = summary(out)
    assert s["status"] == "finalized" and s["partial"] is True
    assert s["requests"]["arrived"] > 0
    # Locust's last rows include the requests in flight when it stopped: every send has its row.
    assert pq.read_table(out / "requests.parquet").num_rows == s["generator"]["dispatched"] > 0
    assert not (out / "parts").exists()
