"""Synthetic LLM measurements from known step-time coefficients.

* `synthetic_steps`: a per-step log (the reference LLM server's JSON-lines fields) whose durations
  are `llm_linear` of the step's contents times (1 + noise), with prompts of varied lengths so that
  every term is identifiable.
* `write_llm_run`: a load-test run folder (`capsim loadtest --protocol openai`'s format: manifest.json
  with the engine's /debug/config, summary.json, requests.parquet with token counts, TTFT, ITL gaps)
  in which the simulator plays the server: Poisson sends at `rate_rps`, lognormal prompt and output
  lengths, one engine replica timed by `coefficients`, plus a constant `overhead_ms` outside the
  engine. The simulator's request rows do not carry each token's time, so a request's ITL gaps are
  written as its TPOT repeated (output − 1 times): the pooled mean ITL is exact, its percentiles are
  not the engine's per-step gaps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from capsim.engine import simulate
from capsim.loadtest.records import REQUEST_SCHEMA
from capsim.scenario import Scenario
from capsim.serving.llm.plane import COMPLETED

EPOCH_S = 1_796_000_000.0
SCHEDULER = {"max_num_seqs": 32, "max_num_batched_tokens": 512, "enable_chunked_prefill": True, "block_size": 16,
             "num_gpu_blocks": 2048, "enable_prefix_caching": True, "max_model_len": 2048}
COEFFICIENTS = {"base_ms": 4.0, "per_prefill_token_ms": 0.02, "per_decode_seq_ms": 0.25}


def synthetic_steps(coefficients_ms: dict[str, float], n: int, noise: float, seed: int) -> pd.DataFrame:
    """`n` steps with durations from `coefficients_ms` (llm_linear's names) and relative noise."""
    rng = np.random.default_rng(seed)
    new = rng.integers(0, 4, n)
    prefill = np.array([rng.integers(20, 400, k).sum() if k else 0 for k in new], dtype=float)
    decode = rng.integers(0, 33, n).astype(float)
    decode[(new == 0) & (decode == 0)] = 1.0
    context = decode * rng.uniform(50, 900, n) + prefill + rng.integers(0, 200, n) * (new > 0)
    c = {k: coefficients_ms.get(k, 0.0) for k in ("base_ms", "per_prefill_token_ms", "per_decode_seq_ms",
                                                  "per_context_token_ms", "per_request_ms")}  # fmt: skip
    exact_ms = (c["base_ms"] + c["per_prefill_token_ms"] * prefill + c["per_decode_seq_ms"] * decode
                + c["per_context_token_ms"] * context + c["per_request_ms"] * new)  # fmt: skip
    duration_ms = exact_ms * (1.0 + noise * rng.standard_normal(n))
    start_s = EPOCH_S + np.cumsum(duration_ms / 1e3)
    return pd.DataFrame({"step": np.arange(n), "start_s": start_s, "end_s": start_s + duration_ms / 1e3,
                         "duration_ms": duration_ms, "prefill_tokens": prefill, "decode_seqs": decode,
                         "context_tokens": context, "new_seqs": new.astype(float), "preempted": 0})  # fmt: skip


def write_steps_jsonl(steps: pd.DataFrame, path: Path) -> None:
    """The steps as the server's --step-log file."""
    with path.open("w") as handle:
        for record in steps.to_dict("records"):
            handle.write(json.dumps(record) + "\n")


def write_llm_run(out: Path, rate_rps: float, coefficients_ms: dict[str, float], *, duration_s: float = 60.0,
                  warmup_s: float = 10.0, seed: int = 1, overhead_ms: float = 0.0,
                  scheduler: dict[str, Any] | None = None, start_s: float = EPOCH_S) -> Path:  # fmt: skip
    """Write a run folder whose server is the simulator with `coefficients_ms` (module docstring)."""
    engine = {**SCHEDULER, **(scheduler or {})}
    data = {
        "name": "synthetic-llm", "duration_s": duration_s, "warmup_s": 0.0, "seed": seed,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": rate_rps},
                     "tokens": {"input": {"kind": "lognormal", "mean": 200, "cv": 0.6, "max": 1000},
                                "output": {"kind": "lognormal", "mean": 60, "cv": 0.6, "max": 400}}},
        "service": {"kind": "llm_linear", **coefficients_ms},
        "hardware": {"name": "synthetic", "usd_per_hour": 0.0},
        "serving": {"mode": "llm", "replicas": 1, "scheduler": {
            "max_num_seqs": engine["max_num_seqs"], "max_num_batched_tokens": engine["max_num_batched_tokens"],
            "chunked_prefill": engine["enable_chunked_prefill"], "block_size": engine["block_size"],
            "kv_cache_blocks": engine["num_gpu_blocks"], "enable_prefix_caching": engine["enable_prefix_caching"],
            "max_model_len": engine["max_model_len"]},
            "cold_start": {"model_load_s": {"kind": "fixed", "value_s": 0.0}}},
    }  # fmt: skip
    frame = simulate(Scenario.model_validate(data)).requests_frame()
    done = frame["outcome"].to_numpy() == COMPLETED
    sent_s = start_s + frame["arrival_s"].to_numpy(dtype=float)
    ttft_ms = (frame["first_token_s"] - frame["arrival_s"]).to_numpy(dtype=float) * 1e3 + overhead_ms
    e2e_ms = (frame["end_s"] - frame["arrival_s"]).to_numpy(dtype=float) * 1e3 + overhead_ms
    output = frame["output_tokens"].to_numpy(dtype=np.int64)
    tpot_ms = np.where(output > 1, (e2e_ms - ttft_ms) / np.maximum(output - 1, 1), np.nan)
    n = len(frame)
    columns: dict[str, Any] = {
        "intended_s": sent_s, "sent_s": sent_s, "latency_ms": np.where(done, e2e_ms, np.nan),
        "latency_corrected_ms": np.where(done, e2e_ms, np.nan), "status": np.where(done, 200, 0),
        "bytes": np.full(n, 100), "error": [None if d else "timeout" for d in done],
        "name": ["/v1/completions"] * n, "worker": np.zeros(n, dtype=np.int32), "server_queue_ms": [None] * n,
        "server_compute_ms": [None] * n, "server_batch_size": [None] * n, "kind": ["inference"] * n,
        "requested_input_tokens": frame["input_tokens"].to_numpy(dtype=np.int32),
        "requested_output_tokens": output.astype(np.int32), "ttft_ms": ttft_ms,
        "itl_ms": [[float(t)] * (int(k) - 1) if d and k > 1 else []
                   for t, k, d in zip(tpot_ms, output, done, strict=True)],
        "input_tokens": frame["input_tokens"].to_numpy(dtype=np.int32), "output_tokens": output.astype(np.int32),
        "chunks": output.astype(np.int32), "usage_reported": np.full(n, True),
    }  # fmt: skip
    schema = pa.schema([f for f in REQUEST_SCHEMA if f.name in columns])
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({f.name: columns[f.name] for f in schema}, schema=schema), out / "requests.parquet")
    manifest = {"settings": {"warmup_s": warmup_s, "duration_s": duration_s, "protocol": "openai",
                             "arrival": {"kind": "poisson", "rate_rps": rate_rps}},
                "target": {"model": "llm-tiny", "server_config": {
                    "config": {"model": "llm-tiny", **engine}, "version": "synthetic",
                    "hardware": {"name": "cpu-2core", "kind": "cpu"}}}}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    summary = {"status": "complete", "model": "llm-tiny", "start_s": start_s, "warmup_s": warmup_s,
               "duration_s": duration_s, "rate_rps": rate_rps, "valid": True, "partial": False}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary))
    return out
