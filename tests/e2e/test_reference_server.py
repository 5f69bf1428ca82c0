"""The reference server as a real subprocess on a free loopback port, driven over HTTP.

One server (MLP, max batch 8, 20 ms batching window, batch log, debug hooks, small body limit)
serves every test in this module; tests assert behaviour and lower bounds, never durations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reference_server.launch import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_BODY_BYTES = 65536


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("refserver")
    args = [
        "--model", "mlp", "--device", "cpu", "--max-batch-size", "8", "--max-wait-ms", "20",
        "--instances", "2", "--batch-log", str(tmp / "batches.jsonl"), "--debug-endpoints",
        "--max-body-bytes", str(MAX_BODY_BYTES), "--torch-threads", "1",
        "--timeout-ms", "0",  # the stall test's request must wait out the stall, not time out
    ]  # fmt: skip
    with ServerProcess(args, log_dir=tmp) as proc:
        proc.batch_log_path = tmp / "batches.jsonl"  # type: ignore[attr-defined]
        yield proc


def v2_body(n: int = 1, seed: int = 0) -> dict[str, object]:
    data = np.random.default_rng(seed).standard_normal((n, 64)).round(4).tolist()
    return {"inputs": [{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": data}]}


def metric_families(url: str) -> dict[str, object]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_health_and_metadata(server: ServerProcess) -> None:
    assert requests.get(server.url + "/v2/health/live", timeout=5).status_code == 200
    assert requests.get(server.url + "/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(server.url + "/v2/models/mlp/ready", timeout=5).status_code == 200
    meta = requests.get(server.url + "/v2/models/mlp", timeout=5).json()
    assert meta["name"] == "mlp" and meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]
    assert requests.get(server.url + "/v2/models/nope", timeout=5).status_code == 404


def test_v2_and_simple_inference_agree_and_carry_timing_headers(server: ServerProcess) -> None:
    body = v2_body(3, seed=1)
    r = requests.post(server.url + "/v2/models/mlp/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "mlp" and out["outputs"][0]["shape"] == [3, 1]
    assert out["outputs"][0]["datatype"] == "FP32" and len(out["outputs"][0]["data"]) == 3
    assert int(r.headers["X-Batch-Size"]) >= 1
    assert float(r.headers["X-Queue-Ms"]) >= 0 and float(r.headers["X-Compute-Ms"]) > 0
    item = body["inputs"][0]["data"][1]  # type: ignore[index]
    s = requests.post(server.url + "/predict/mlp", json={"inputs": item}, timeout=10)
    assert s.status_code == 200, s.text
    simple = s.json()
    assert set(simple) == {"model", "outputs", "batch_size", "queue_ms", "compute_ms"}
    assert simple["outputs"] == pytest.approx([out["outputs"][0]["data"][1]], rel=1e-5)
    assert "X-Batch-Size" in s.headers and "X-Compute-Ms" in s.headers


def test_concurrent_requests_are_batched(server: ServerProcess) -> None:
    def send(i: int) -> int:
        r = requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(1, seed=i), timeout=30)
        assert r.status_code == 200, r.text
        return int(r.headers["X-Batch-Size"])

    with ThreadPoolExecutor(16) as pool:
        sizes = list(pool.map(send, range(96)))
    assert max(sizes) > 1 and max(sizes) <= 8
    fams = metric_families(server.url)
    hist = {s.labels.get("le"): s.value for s in fams["refserver_batch_size"].samples if s.name.endswith("_bucket")}
    assert hist["+Inf"] > hist["1.0"]  # some batches held more than one request


def test_batch_log_file_and_debug_endpoint_hold_the_same_records(server: ServerProcess) -> None:
    for i in range(3):
        requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(1, seed=i), timeout=10)
    requests.post(server.url + "/v2/models/mlp/infer", json={**v2_body(1), "id": "req-a"}, timeout=10)
    requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(1), headers={"X-Request-Id": "req-b"}, timeout=10)
    fetched = requests.get(server.url + "/debug/batches", params={"since": 0}, timeout=10).json()
    records = fetched["batches"]
    ids = [b["batch_id"] for b in records]
    assert ids == list(range(1, len(ids) + 1))  # in order, none missing
    assert fetched["last_id"] == ids[-1]
    for b in records:
        assert b["model"] == "mlp" and b["instance"] in (0, 1) and 1 <= b["size"] <= 8
        assert len(b["queue_wait_ms"]) == len(b["arrival_s"]) == b["size"]
        assert all(a <= b["start_s"] + 1e-6 for a in b["arrival_s"]) and b["start_s"] <= b["end_s"]
    ids_sent = [i for b in records for i in b.get("request_ids", []) if i is not None]
    assert {"req-a", "req-b"} <= set(ids_sent)  # client ids (v2 "id" or X-Request-Id) are logged
    lines = server.batch_log_path.read_text().splitlines()  # type: ignore[attr-defined]
    from_file = [json.loads(line) for line in lines]
    assert from_file[: len(records)] == records  # flushed as written
    later = requests.get(server.url + "/debug/batches", params={"since": ids[-2]}, timeout=10).json()
    assert later["batches"][0]["batch_id"] == ids[-1]


def test_metrics_parse_and_cover_the_contract(server: ServerProcess) -> None:
    # Tests may run on another xdist worker with its own server: make sure something was served.
    assert requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(), timeout=10).status_code == 200
    fams = metric_families(server.url)
    for name in (
        "refserver_requests", "refserver_request_latency_seconds", "refserver_queue_wait_seconds",
        "refserver_batch_size", "refserver_batch_compute_seconds", "refserver_queue_depth",
        "refserver_nvml_available", "process_resident_memory_bytes", "process_cpu_seconds",
    ):  # fmt: skip
        assert name in fams, name
    codes = {s.labels["code"] for s in fams["refserver_requests"].samples if s.name.endswith("_total")}
    assert "200" in codes


def test_no_nvml_is_reported_once_and_cpu_figures_exported(server: ServerProcess) -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML")
    except pynvml.NVMLError:
        pass
    fams = metric_families(server.url)
    sample = fams["refserver_nvml_available"].samples[0]  # type: ignore[attr-defined]
    assert sample.value == 0 and "NVML" in sample.labels["reason"]
    assert fams["refserver_process_rss_bytes"].samples[0].value > 0  # type: ignore[attr-defined]
    assert server.logs().count("NVML unavailable") == 1
    telemetry = requests.get(server.url + "/debug/telemetry", timeout=10).json()
    assert telemetry["nvml_available"] is False and len(telemetry["samples"]) >= 1


def _v2_bytes(shape: list[int], datatype: str, data: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}).encode()


@pytest.mark.parametrize(
    ("path", "payload", "status", "fragment"),
    [
        ("/v2/models/mlp/infer", b"{oops", 400, "malformed JSON"),
        ("/v2/models/mlp/infer", _v2_bytes([1, 3], "FP32", [1, 2, 3]), 400, "shape"),
        ("/v2/models/mlp/infer", _v2_bytes([1, 64], "INT64", [1] * 64), 400, "datatype"),
        ("/predict/mlp", json.dumps({"inputs": [[1.0] * 64]}).encode(), 400, "expected"),
        ("/v2/models/resnet/infer", json.dumps(v2_body()).encode(), 404, "unknown model"),
        ("/predict/resnet", b"{}", 404, "unknown model"),
        ("/v2/models/mlp/infer", b"[" + b"0.5," * (MAX_BODY_BYTES // 4) + b"0]", 413, "exceeds"),
        ("/no/such/route", b"{}", 404, ""),
    ],
)
def test_bad_requests_get_4xx_json_errors(
    server: ServerProcess, path: str, payload: bytes, status: int, fragment: str
) -> None:
    r = requests.post(server.url + path, data=payload, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert fragment in r.json()["error"]


def test_stall_hook_holds_every_executor(server: ServerProcess) -> None:
    r = requests.post(server.url + "/debug/stall", params={"seconds": 0.5}, timeout=10)
    assert r.status_code == 200
    answer = requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(), timeout=30)
    assert answer.status_code == 200
    assert float(answer.headers["X-Queue-Ms"]) >= 300  # it waited out (most of) the stall in the queue


def test_binary_tensor_extension_over_http(server: ServerProcess) -> None:
    x = np.random.default_rng(3).standard_normal((2, 64)).astype("<f4")
    tensor = {"name": "input", "shape": [2, 64], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    r = requests.post(
        server.url + "/v2/models/mlp/infer",
        data=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:n])
    assert meta["outputs"][0]["shape"] == [2, 1] and meta["outputs"][0]["parameters"]["binary_data_size"] == 8
    as_json = requests.post(server.url + "/v2/models/mlp/infer", json=v2_body(2, seed=0), timeout=10).json()
    assert len(np.frombuffer(r.content[n:], "<f4")) == 2 and len(as_json["outputs"][0]["data"]) == 2
