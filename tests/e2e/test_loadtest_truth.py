"""End-to-end: what `capsim loadtest` tells a new user is true (issue 13, item 6). Real subprocesses
on 127.0.0.1 (the reference server, capsim, Locust), small rates, each run a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import requests

from tests.e2e.test_loadtest import CAPSIM, REPO, loadtest, start_reference_server, stop, summary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start_reference_server()
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    # 1.5 s per batch of up to 64: about 40 req/s of capacity, every request in flight for >= 1.5 s.
    proc, url = start_reference_server("--extra-latency-ms", "1500", "--max-batch-size", "64")
    yield url
    stop(proc)


def test_model_defaults_to_the_only_served_model_and_the_folder_has_only_its_batches(
        tmp_path: Path, server: str) -> None:
    # History from before the run: batches the run folder must not hold.
    for _ in range(20):
        requests.post(f"{server}/predict/mlp", json={"inputs": [0.5] * 64}, timeout=5).raise_for_status()
    last_before = requests.get(f"{server}/debug/batches", params={"since": 0, "limit": 0}, timeout=5).json()["last_id"]
    assert last_before >= 20
    out = tmp_path / "run"
    done = loadtest(out, server, "--rate", "20", "--duration", "3", "--warmup", "1")  # no --model
    assert done.returncode == 0, done.stderr
    assert "model: mlp (the only model the target serves)" in done.stdout
    assert json.loads((out / "manifest.json").read_text())["target"]["model"] == "mlp"
    batch_ids = pq.read_table(out / "batches.parquet").column("batch_id").to_pylist()
    assert batch_ids and min(batch_ids) == last_before + 1  # the run's first batch, none before it
    assert summary(out)["telemetry"]["batches"]["missed"] == 0


def test_a_custom_locustfile_is_reported_per_name_and_only_inference_is_headline(
        tmp_path: Path, server: str) -> None:
    team = tmp_path / "team_locustfile.py"
    team.write_text(
        "from locust import FastHttpUser, constant, task\n\n"
        "class Team(FastHttpUser):\n"
        "    wait_time = constant(0.05)\n\n"
        "    @task\n"
        "    def predict(self):\n"
        "        self.client.get('/v2/health/ready', name='health')\n"
        "        self.client.post('/predict/mlp', json={'inputs': [0.5] * 64}, name='team-predict')\n"
        "        self.client.get('/v2/models/mlp', name='meta')\n"
    )
    out = tmp_path / "custom"
    done = loadtest(out, server, "--locustfile", str(team), "--users", "2", "--duration", "4", "--warmup", "1",
                    "--inference-name", "meta")  # mark one more name as inference, by hand
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    kinds = rows.groupby("name")["kind"].unique().to_dict()
    assert {k: list(v) for k, v in kinds.items()} == {"health": ["other"], "team-predict": ["inference"],
                                                      "meta": ["inference"]}
    s = summary(out)
    assert set(s["by_name"]) == {"health", "team-predict", "meta"}
    assert s["by_name"]["health"]["kind"] == "other" and s["by_name"]["health"]["completed"] > 0
    measured = rows[(rows.intended_s >= s["start_s"] + 1) & (rows.kind == "inference")]
    assert s["requests"]["arrived"] == len(measured)  # the headline counts inference requests only
    assert "health:" not in done.stdout and "health (other)" in done.stdout


def _children(pid: int, flag: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if flag in p.cmdline()]


def _start(out: Path, url: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CAPSIM, "--target", url, "--out", str(out), "--model", "mlp", "--duration", "120",
                             "--warmup", "1", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)


def _wait_for_parts(out: Path, count: int) -> None:
    parts = out / "parts" / "step-00"
    deadline = time.monotonic() + 60
    while len(list(parts.glob("requests-w*.parquet"))) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(parts.glob("requests-w*.parquet"))) >= count, "no rows arrived"


def test_sigint_keeps_every_request_sent_and_marks_those_in_flight(tmp_path: Path, slow_server: str) -> None:
    """Every request is in flight for 1.5 s or more: at Ctrl-C, about 30 are. Each one sent has a row;
    those not answered within the 1 s grace are `interrupted` (send time, no latency)."""
    out = tmp_path / "run"
    proc = _start(out, slow_server, "--rate", "20", "--arrival", "constant")
    _wait_for_parts(out, 4)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    s = summary(out)
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    assert len(rows) == s["generator"]["dispatched"] > 40  # no request that left is missing
    interrupted = rows[rows.error == "interrupted"]
    assert len(interrupted) > 0 and interrupted.latency_ms.isna().all() and interrupted.sent_s.notna().all()
    assert s["requests"]["interrupted"] == len(interrupted[interrupted.intended_s >= s["start_s"] + 1])
    assert s["latency_ms"]["max"] < 10_000  # interrupted requests are counted, never averaged


def test_sigkill_of_locust_keeps_what_was_flushed(tmp_path: Path, server: str) -> None:
    """The Locust master dies (SIGKILL): capsim notices, keeps every row flushed before the kill and
    writes a partial run folder; a torn temporary part left by a killed writer is ignored."""
    out = tmp_path / "run"
    proc = _start(out, server, "--rate", "30")
    _wait_for_parts(out, 3)
    parts = out / "parts" / "step-00"
    (parts / ".requests-w000-999999.parquet.tmp").write_bytes(b"PAR1 torn")  # as a writer killed mid-write leaves
    masters = _children(proc.pid, "--master")
    assert len(masters) == 1
    flushed = sum(pq.read_metadata(p).num_rows for p in parts.glob("requests-w*.parquet"))
    os.kill(masters[0].pid, signal.SIGKILL)
    proc.communicate(timeout=90)
    assert proc.returncode == 130
    s = summary(out)
    assert s["partial"] is True and s["status"] == "interrupted"
    assert pq.read_table(out / "requests.parquet").num_rows >= flushed > 0
    assert not (out / "parts").exists()
