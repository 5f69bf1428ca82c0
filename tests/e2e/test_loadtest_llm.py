"""`capsim loadtest --protocol openai` against the reference LLM server (llm-tiny on the CPU), both as
real subprocesses on loopback: every request streams exactly the tokens asked for, the run folder
holds the LLM columns and the summary the simulator's LLM keys, and the vLLM-named gauges are in
telemetry.parquet. Assertions are on behaviour and counts, never on durations."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reference_server.launch import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAPSIM = [sys.executable, "-m", "capsim.cli.main", "loadtest"]
SUMMARY_KEYS = {"mean", "p50", "p90", "p95", "p99", "p999", "max"}
OUTPUT = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("llmserver")
    args = ["--model", "llm-tiny", "--device", "cpu", "--max-num-seqs", "8", "--max-num-batched-tokens", "256",
            "--max-model-len", "512", "--torch-threads", "1"]
    with ServerProcess(args, log_dir=tmp) as proc:
        yield proc


def run(url: str, out: Path, *flags: str) -> dict:
    done = subprocess.run([*CAPSIM, "--target", url, "--protocol", "openai", "--output-tokens", str(OUTPUT),
                           "--rate", "3", "--duration", "6", "--warmup", "1", "--scrape-interval", "1",
                           "--out", str(out), "--json", *flags], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_streamed_load_test_of_the_reference_server(server: ServerProcess, tmp_path: Path, endpoint: str) -> None:
    out = tmp_path / endpoint
    summary = run(server.url, out, "--endpoint", endpoint, "--input-tokens", "lognormal:60,0.5,200",
                  "--slo-ttft-ms", "60000", "--slo-tpot-ms", "60000")
    rows = pq.read_table(out / "requests.parquet").to_pylist()
    assert rows and len(rows) == summary["generator"]["dispatched"]
    for row in rows:
        assert row["error"] is None and row["status"] == 200, row
        # The reference tokenizer is one token per byte: the prompt is exactly as long as asked
        # (chat: the template included), and ignore_eos + min_tokens force the output length.
        assert row["usage_reported"] is True and row["input_tokens"] == row["requested_input_tokens"]
        assert row["output_tokens"] == row["chunks"] == OUTPUT and len(row["itl_ms"]) == OUTPUT - 1
        assert 0 < row["ttft_ms"] < row["latency_ms"]
    assert len({r["requested_input_tokens"] for r in rows}) > 1  # drawn from the lognormal
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["model"] == "llm-tiny"  # found through GET /v1/models
    assert manifest["target"]["server_config"]["config"]["max_num_seqs"] == 8
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "latency_ms", "queue_wait_ms"):
        assert set(summary[key]) == SUMMARY_KEYS
    assert summary["ttft_ms"]["p50"] < summary["latency_ms"]["p50"]
    measured = summary["requests"]["completed"]
    assert summary["tokens"]["output"] == OUTPUT * measured and summary["tokens"]["chunks_per_token"] == 1.0
    assert summary["slo"]["attainment"] == 1.0 and summary["slo"]["within"] == measured
    # The server's step log was paged into the run folder; each request is followed through it by
    # its X-Request-Id: one prefill of its whole prompt, then one decode step per later token.
    steps = pq.read_table(out / "steps.parquet").to_pylist()
    assert json.loads((out / "summary.json").read_text())["telemetry"]["steps"]["missed"] == 0
    scheduled: dict[str, int] = {}
    for step in steps:
        for rid, count in zip(step["request_ids"], step["scheduled_tokens"], strict=True):
            scheduled[rid] = scheduled.get(rid, 0) + count
    assert set(scheduled) == {r["request_id"] for r in rows}
    for row in rows:
        assert scheduled[row["request_id"]] == row["input_tokens"] + OUTPUT - 1
    metrics = set(pq.read_table(out / "telemetry.parquet").column("metric").to_pylist())
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} <= metrics
