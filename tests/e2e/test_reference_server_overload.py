"""A server that cannot keep up: rejections (429), queue timeouts (504), bounded memory, and
`max_batch_size: 1` never batching. Real subprocesses on free loopback ports."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reference_server.launch import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}


def post(url: str) -> tuple[int, float, dict[str, str], dict[str, object]]:
    t0 = time.perf_counter()
    r = requests.post(url + "/v2/models/mlp/infer", json=BODY, timeout=60)
    return r.status_code, time.perf_counter() - t0, dict(r.headers), r.json()


def rss_bytes(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "process_resident_memory_bytes":
            return float(family.samples[0].value)
    raise AssertionError("no RSS metric")


def test_max_batch_size_1_never_batches(tmp_path: Path) -> None:
    args = ["--model", "mlp", "--device", "cpu", "--max-batch-size", "1", "--max-wait-ms", "50",
            "--torch-threads", "1"]  # fmt: skip
    with ServerProcess(args, log_dir=tmp_path) as server, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: post(server.url), range(64)))
        assert all(status == 200 for status, *_ in results)
        assert {headers["x-batch-size"] for _, _, headers, _ in results} == {"1"}
        batches = requests.get(server.url + "/debug/batches", timeout=10).json()["batches"]
        assert len(batches) >= 64 and {b["size"] for b in batches} == {1}


def test_overload_is_rejected_quickly_with_bounded_memory(tmp_path: Path) -> None:
    # One executor that takes >= 100 ms per request, room for 4 waiting: nearly everything is rejected.
    args = ["--model", "mlp", "--device", "cpu", "--max-batch-size", "1", "--queue-capacity", "4",
            "--extra-latency-ms", "100", "--torch-threads", "1"]  # fmt: skip
    with ServerProcess(args, log_dir=tmp_path) as server, ThreadPoolExecutor(32) as pool:
        rss_before = rss_bytes(server.url)
        results = list(pool.map(lambda _: post(server.url), range(600)))
        statuses = [status for status, *_ in results]
        assert set(statuses) <= {200, 429}
        rejected = [r for r in results if r[0] == 429]
        served = [r for r in results if r[0] == 200]
        assert len(rejected) > len(served) > 0
        assert all("queue full" in body["error"] for _, _, _, body in rejected)  # type: ignore[operator]
        # "Quickly": a rejection does not wait for the model; a served request waits >= 100 ms.
        assert statistics.median(t for _, t, _, _ in rejected) < statistics.median(t for _, t, _, _ in served)
        assert min(float(h["x-compute-ms"]) for _, _, h, _ in served) >= 100  # the extra-latency hook
        text = requests.get(server.url + "/metrics", timeout=10).text
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        by_code = {s.labels["code"]: s.value for s in fams["refserver_requests"].samples if s.name.endswith("_total")}
        assert by_code["429"] == len(rejected) and by_code["200"] == len(served)
        assert fams["refserver_queue_depth"].samples[0].value <= 4
        assert rss_bytes(server.url) - rss_before < 64 * 2**20  # 600 requests in, memory flat


def test_requests_queued_past_the_timeout_get_504(tmp_path: Path) -> None:
    # 200 ms per request, 300 ms timeout, 3 waiting at most: of 12 concurrent requests the first is
    # served, the third in the queue cannot start before 400 ms so it times out, the rest are rejected.
    args = ["--model", "mlp", "--device", "cpu", "--max-batch-size", "1", "--queue-capacity", "3",
            "--timeout-ms", "300", "--extra-latency-ms", "200", "--torch-threads", "1"]  # fmt: skip
    with ServerProcess(args, log_dir=tmp_path) as server, ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: post(server.url), range(12)))
        statuses = [status for status, *_ in results]
        assert {200, 429, 504} <= set(statuses), statuses
        timed_out = [body for status, _, _, body in results if status == 504]
        assert all("timed out" in body["error"] for body in timed_out)  # type: ignore[operator]
