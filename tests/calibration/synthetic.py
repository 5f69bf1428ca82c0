"""Synthetic run folders: "measurements" of a server whose service curve we know exactly.

The simulator plays the server: Poisson arrivals at each rate, a replica with the given batching,
and a linear service curve (`base_ms + per_item_ms × k`, lognormal with `cv`). Its per-request
records are written in the load tester's format (manifest.json, summary.json, requests.parquet and,
for a white-box target, batches.parquet and the X-Queue/X-Compute/X-Batch-Size columns), with the
client-side overhead added per request with ± `overhead_jitter` uniform noise — measurement noise the
calibration's constant overhead cannot reproduce exactly.

With `frontend` (a `serving.frontend` mapping) the simulated server has that front end, and the
batch log's `arrival_s` / X-Queue-Ms count from the moment a request joined the batcher's queue, as
the reference server logs them. The simulator's request records do not carry that moment, so it is
reconstructed: one worker with a fixed time (cv 0) is a FIFO server whose departures follow from the
arrivals alone (checked against every batch start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.calibration.frontend_fit import fifo_departures_s
from capsim.engine import simulate
from capsim.metrics.request_log import COMPLETED, REJECTED, TIMED_OUT
from capsim.scenario import Scenario

EPOCH_S = 1_795_000_000.0
STEP_GAP_S = 5.0


def _step_frame(rate_rps: float, service: dict[str, Any], server: dict[str, Any], duration_s: float,
                overhead_ms: float, seed: int, frontend: dict[str, Any] | None = None) -> pd.DataFrame:
    data: dict[str, Any] = {
        "name": "synthetic", "duration_s": duration_s, "warmup_s": 0.0, "seed": seed,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": rate_rps}},
        "service": service, "hardware": {"name": "synthetic", "usd_per_hour": 0.0},
        "serving": {"mode": "realtime", "replicas": 1, "instances_per_replica": server.get("instances", 1),
                    "batching": {"max_batch_size": server["max_batch_size"], "max_wait_ms": server["max_wait_ms"]},
                    "queue_capacity": server.get("queue_capacity"), "overhead_ms": 0.0},
    }  # fmt: skip
    if frontend is not None:
        data["serving"]["frontend"] = frontend
    return simulate(Scenario.model_validate(data)).requests_frame()


def queue_entry_s(frame: pd.DataFrame, frontend: dict[str, Any] | None) -> np.ndarray:
    """When each simulated request joined the batcher's queue (seconds from the step's start)."""
    arrival_s = frame["arrival_s"].to_numpy(dtype=float)
    if frontend is None:
        return arrival_s
    if frontend.get("workers", 1) != 1 or frontend.get("cv", 0.0) != 0.0:
        raise ValueError("synthetic front end: only workers 1 and cv 0 can be reconstructed from the arrivals")
    entered_s = fifo_departures_s(arrival_s, np.full(arrival_s.size, frontend["per_request_ms"] / 1000.0))
    started_s = frame["start_s"].to_numpy(dtype=float)
    served = np.isfinite(started_s)
    if np.any(started_s[served] < entered_s[served] - 1e-9):
        raise AssertionError("a batch started before its request left the reconstructed front end")
    return entered_s


def write_run_folder(
    out: Path, rates_rps: list[float], *, service: dict[str, Any], server: dict[str, Any], overhead_ms: float,
    duration_s: float = 60.0, warmup_s: float = 5.0, model: str = "synthetic", white_box: bool = True,
    overhead_jitter: float = 0.1, seed: int = 1, frontend: dict[str, Any] | None = None,
) -> Path:
    """Write a run folder with one step per rate (a sweep when more than one)."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed + 1000)
    request_parts, batch_parts, steps = [], [], []
    batch_id = 0
    for step, rate in enumerate(rates_rps):
        start_s = EPOCH_S + step * (duration_s + STEP_GAP_S)
        frame = _step_frame(rate, service, server, duration_s, overhead_ms, seed + step, frontend)
        frame = frame.assign(entered_s=queue_entry_s(frame, frontend))
        sent_s = start_s + frame["arrival_s"].to_numpy()
        outcome = frame["outcome"].to_numpy()
        overhead = overhead_ms * (1.0 + overhead_jitter * rng.uniform(-1.0, 1.0, len(frame)))
        busy_ms = (frame["end_s"] - frame["start_s"]).to_numpy() * 1000.0
        latency_ms = (frame["end_s"] - frame["arrival_s"]).to_numpy() * 1000.0 + overhead
        status = np.select([outcome == COMPLETED, outcome == REJECTED, outcome == TIMED_OUT], [200, 429, 504], 0)
        rows = pd.DataFrame({
            "intended_s": sent_s, "sent_s": sent_s, "latency_ms": np.where(status == 200, latency_ms, 1.0),
            "latency_corrected_ms": np.where(status == 200, latency_ms, 1.0), "status": status.astype(np.int32),
            "bytes": 100, "error": None, "name": "/predict/" + model, "worker": 0, "step": step,
        })  # fmt: skip
        if white_box:
            rows["server_queue_ms"] = (frame["start_s"] - frame["entered_s"]).to_numpy() * 1000.0
            rows["server_compute_ms"] = busy_ms
            rows["server_batch_size"] = frame["batch_size"].to_numpy().astype(np.int32)
            served = frame[outcome == COMPLETED]
            for (start, end), group in served.groupby(["start_s", "end_s"], sort=True):
                batch_id += 1
                batch_parts.append({
                    "batch_id": batch_id, "model": model, "instance": 0, "size": len(group),
                    "start_s": start_s + start, "end_s": start_s + end,
                    "queue_wait_ms": list((start - group["entered_s"]) * 1000.0),
                    "arrival_s": list(start_s + group["entered_s"]),
                })  # fmt: skip
        request_parts.append(rows)
        steps.append({"step": step, "rate_rps": rate, "start_s": start_s, "valid": True, "invalid_reasons": [],
                      "partial": False})  # fmt: skip
    pd.concat(request_parts, ignore_index=True).to_parquet(out / "requests.parquet", index=False)
    if white_box:
        pd.DataFrame(batch_parts).to_parquet(out / "batches.parquet", index=False)
    config = {"model": model, "max_batch_size": server["max_batch_size"], "max_wait_ms": server["max_wait_ms"],
              "instances": server.get("instances", 1), "queue_capacity": server.get("queue_capacity") or 100000,
              "timeout_ms": 0.0}  # fmt: skip
    manifest = {
        "kind": "capsim-loadtest", "format_version": 1,
        "target": {"url": "http://127.0.0.1:1", "model": model, "reference_server": white_box,
                   "server_config": {"config": config, "hardware": {"name": "synthetic"}, "version": "test"}
                   if white_box else None},
        "settings": {"warmup_s": warmup_s, "duration_s": duration_s, "arrival": {"kind": "poisson"}},
        "versions": {"python": "3"}, "hardware": {"hostname": "synthetic"},
    }  # fmt: skip
    summary = {"status": "complete", "partial": False, "model": model, "start_s": steps[0]["start_s"],
               "steps": steps if len(steps) > 1 else [], **({} if len(steps) > 1 else steps[0])}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "summary.json").write_text(json.dumps(summary))
    return out
