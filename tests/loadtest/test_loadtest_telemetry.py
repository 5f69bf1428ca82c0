"""Telemetry beside the load: Prometheus scraping and the batch log into parquet parts, and NVML
that degrades to a recorded reason (never an error) on machines without a GPU."""

from __future__ import annotations

import json
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest

from capsim.loadtest.nvml import NvmlSampler
from capsim.loadtest.parts import read_tables
from capsim.loadtest.server_logs import BATCH_SCHEMA
from capsim.loadtest.telemetry import TELEMETRY_SCHEMA, TelemetryCollector


def batch(i: int, end_s: float = 0.0) -> dict:
    end_s = end_s or 2e9 + i  # in the future: after any collector's start
    return {"batch_id": i, "model": "mlp", "instance": 0, "size": 2, "start_s": end_s - 0.5, "end_s": end_s,
            "queue_wait_ms": [1.0, 2.0], "arrival_s": [end_s - 0.6, end_s - 0.55]}


BATCHES = [batch(i) for i in range(1, 8)]
LOG = {"batches": BATCHES, "report_last_id": False}  # what the fake server's batch log holds now


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/metrics":
            body = b'# TYPE q gauge\nq{model="mlp"} 3\nserved_total 10\n'
        elif parts.path == "/debug/batches":
            query = parse_qs(parts.query)
            since, limit = int(query["since"][0]), int(query.get("limit", ["3"])[0])
            held = LOG["batches"]
            answer: dict = {"batches": [b for b in held if b["batch_id"] > since][:min(limit, 3)]}
            if LOG["report_last_id"]:
                answer["last_id"] = max((b["batch_id"] for b in held), default=0)
            body = json.dumps(answer).encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def metrics_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_scrapes_metrics_and_pages_through_batches(tmp_path: Path, metrics_server: str) -> None:
    collector = TelemetryCollector(metrics_server, tmp_path, interval_s=0.05, nvml=False, batches=True)
    collector.start()
    threading.Event().wait(0.4)
    collector.stop()
    telemetry = read_tables(list(tmp_path.glob("telemetry-*.parquet")), TELEMETRY_SCHEMA)
    assert telemetry is not None and telemetry.num_rows >= 4
    rows = telemetry.to_pylist()
    assert {(r["metric"], r["labels"], r["value"]) for r in rows} == {("q", "model=mlp", 3.0),
                                                                      ("served_total", "", 10.0)}
    assert all(r["source"] == "prometheus" and r["time_s"] > 1e9 for r in rows)
    batches = read_tables(list(tmp_path.glob("batches-*.parquet")), BATCH_SCHEMA)
    assert batches is not None
    assert sorted(batches.column("batch_id").to_pylist()) == list(range(1, 8))  # every batch once
    assert collector.describe()["nvml"]["enabled"] is False


@pytest.fixture
def batch_log() -> Iterator[dict]:
    yield LOG
    LOG.update(batches=BATCHES, report_last_id=False)


@pytest.mark.parametrize("report_last_id", [True, False])
def test_a_run_keeps_only_its_own_batches(tmp_path: Path, metrics_server: str, batch_log: dict,
                                          report_last_id: bool) -> None:
    """The server logged 50 batches before the run (ended in the past): none of them may land in
    the run folder, whether the server reports its last id (paging starts after it) or not (batches
    that ended before the collector started are dropped); the 5 batches of the run all do."""
    history = [batch(i, end_s=1.7e9 + i) for i in range(1, 51)]
    batch_log.update(batches=history, report_last_id=report_last_id)
    collector = TelemetryCollector(metrics_server, tmp_path, interval_s=0.02, nvml=False, batches=True)
    collector.start()
    batch_log["batches"] = history + [batch(i) for i in range(51, 56)]
    threading.Event().wait(0.3)
    collector.stop()
    batches = read_tables(list(tmp_path.glob("batches-*.parquet")), BATCH_SCHEMA)
    assert batches is not None
    assert sorted(batches.column("batch_id").to_pylist()) == list(range(51, 56))
    assert collector.describe()["batches"] == {"enabled": True, "count": 5, "missed": 0}


def test_unreachable_metrics_are_counted_not_raised(tmp_path: Path) -> None:
    collector = TelemetryCollector("http://127.0.0.1:9", tmp_path, interval_s=0.05, nvml=False, batches=False)
    collector.start()
    threading.Event().wait(0.2)
    collector.stop()
    described = collector.describe()["prometheus"]
    assert described["errors"] >= 1 and described["ok"] == 0 and described["last_error"]
    assert not list(tmp_path.glob("telemetry-*.parquet"))


def test_nvml_without_gpu_records_why() -> None:
    sampler = NvmlSampler()
    if sampler.enabled:  # a machine with a GPU: samples come back with the nvml source
        rows = sampler.sample()
        sampler.close()
        assert rows and all(r[1] == "nvml" for r in rows)
    else:
        assert sampler.reason  # e.g. "NVMLError_LibraryNotFound: NVML Shared Library Not Found"
        assert sampler.sample() == []


def test_parts_written_by_the_collector_are_parquet(tmp_path: Path, metrics_server: str) -> None:
    collector = TelemetryCollector(metrics_server, tmp_path, interval_s=0.05, nvml=False, batches=False)
    collector.start()
    collector.stop()
    for path in tmp_path.glob("*.parquet"):
        pq.read_table(path)


def _fake_pynvml() -> types.ModuleType:
    """A pynvml module with one GPU whose old temperature call is gone (the NVML boundary only)."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.NVML_CLOCK_SM, mod.NVML_TEMPERATURE_GPU = 1, 0  # type: ignore[attr-defined]
    calls = {"shutdown": 0}
    mod.calls = calls  # type: ignore[attr-defined]
    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2**30, total=80 * 2**30)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPowerUsage = lambda h: 118_200  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTotalEnergyConsumption = lambda h: 30_124_280  # type: ignore[attr-defined]
    mod.nvmlDeviceGetClockInfo = lambda h, clock: 1980  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTemperatureV = lambda h, sensor: 38  # type: ignore[attr-defined]

    def shutdown() -> None:
        calls["shutdown"] += 1

    mod.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    return mod


def test_nvml_samples_every_metric_and_the_summary_says_so_after_stop(
    tmp_path: Path, metrics_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    collector = TelemetryCollector(metrics_server, tmp_path, interval_s=0.05, nvml=True, batches=False)
    collector.start()
    threading.Event().wait(0.35)
    collector.stop()
    # The summary is written after stop(): it must still say GPU samples were taken.
    assert collector.describe()["nvml"] == {"enabled": True, "reason": None, "interval_s": 0.1}
    assert fake.calls["shutdown"] == 1  # type: ignore[attr-defined]
    assert collector.nvml is not None and collector.nvml.sample() == []  # closed: no more samples
    telemetry = read_tables(list(tmp_path.glob("telemetry-*.parquet")), TELEMETRY_SCHEMA)
    assert telemetry is not None
    nvml = {(r["metric"], r["value"]) for r in telemetry.to_pylist() if r["source"] == "nvml"}
    assert nvml == {("gpu_utilization_percent", 37.0), ("gpu_memory_used_bytes", float(2**30)),
                    ("gpu_power_watts", 118.2), ("gpu_energy_joules", 30124.28), ("gpu_sm_clock_mhz", 1980.0),
                    ("gpu_temperature_c", 38.0)}  # fmt: skip
