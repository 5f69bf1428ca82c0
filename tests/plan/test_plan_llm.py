"""`capsim plan` on LLM engines: hardware candidates by roofline, TTFT/TPOT against the SLO, cost per
million output tokens, and the LLM headroom rule (no preemption, running below max_num_seqs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capsim.cli.main import main
from capsim.plan.rules import llm_headroom
from tests.plan.helpers import write_scenario

# 2 requests/s of 512 prompt + 128 output tokens of Llama-3.1-8B: one engine of any candidate carries it.
LLM: dict[str, Any] = {
    "name": "llm-plan", "duration_s": 120, "warmup_s": 20, "seed": 3,
    "workload": {"arrival": {"kind": "poisson", "rate_rps": 2},
                 "tokens": {"input": {"kind": "fixed", "value": 512}, "output": {"kind": "fixed", "value": 128}}},
    "model": {"name": "llama-3.1-8b"}, "hardware": {"name": "A100-80GB"}, "service": {"kind": "llm_roofline"},
    "serving": {"mode": "llm", "replicas": 1, "load_balancer": "least_outstanding"},
    "slo": {"ttft_ms": 1000, "tpot_ms": 50, "percentile": 99},
}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # two plans (one writing its pick's run folder) and a report: ~15 s on the shared VM
def test_an_llm_plan_across_hardware_reads_ttft_tpot_and_costs_output_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = str(write_scenario(tmp_path, LLM)), tmp_path / "plan"
    code, _, _ = run(capsys, path, "--hardware", "A100-80GB,L40S", "--min-replicas", "1", "--out", str(out))
    document = json.loads((out / "plan.json").read_text())
    rows = document["levels"][0]["candidates"]
    assert code == 0 and document["kind"] == "llm" and document["space"]["max_wait_ms"] == []
    assert document["slo"] == {"ttft_ms": 1000, "tpot_ms": 50, "percentile": 99}
    simulated = [r for r in rows if r["replications"]]
    assert {r["hardware"] for r in rows} == {"A100-80GB", "L40S"} and simulated
    for row in simulated:
        assert row["ttft_ms"] > 0 and row["tpot_ms"] > 0 and row["max_wait_ms"] is None
        assert row["tail_ms"] in (row["ttft_ms"], row["tpot_ms"])  # the objective that decided the verdict
        assert row["usd_per_million_output_tokens"] > row["cost_usd_per_h"] > 0  # < 1M output tokens an hour
    pick = document["levels"][0]["pick"]
    assert pick is not None and pick["status"] == "meets"
    assert pick["cost_usd_per_h"] == min(r["cost_usd_per_h"] for r in rows if r["status"] == "meets")
    code, stdout, _ = run(capsys, path, "--hardware", "A100-80GB,L40S", "--min-replicas", "1")
    assert code == 0 and "TTFT p99 ms" in stdout and "USD per 1M output tokens" in stdout
    assert main(["report", str(out), "-o", str(tmp_path / "plan.html")]) == 0
    page = (tmp_path / "plan.html").read_text()
    assert "TTFT p99" in page and "TPOT p99" in page and "per million output tokens" in page


@pytest.mark.parametrize(
    ("args", "overrides", "names"),
    [
        (["--hardware", "L40S"], {"service": {"kind": "llm_linear", "base_ms": 5.0, "per_prefill_token_ms": 0.1,
                                              "per_decode_seq_ms": 0.1}}, "service"),  # fitted on one GPU
        (["--max-wait-ms", "2"], {}, "--max-wait-ms"),
    ],
)
def test_what_an_llm_plan_cannot_search_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], overrides: dict[str, Any], names: str
) -> None:
    code, stdout, stderr = run(capsys, str(write_scenario(tmp_path, {**LLM, **overrides})), *args)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and names in stderr


def _replication(preemptions: int, peak_running: int) -> dict[str, Any]:
    return {"engine_settings": {"max_num_seqs": 8}, "kv_cache": {"preemptions": preemptions},
            "batch_size": {"max": peak_running}}  # fmt: skip


def test_the_llm_headroom_rule() -> None:
    assert llm_headroom([_replication(0, 7), _replication(0, 5)]) is None
    assert "3 preemptions" in str(llm_headroom([_replication(0, 7), _replication(3, 5)]))
    assert "8 requests running at once, at max_num_seqs (8)" in str(llm_headroom([_replication(0, 8)]))
    assert llm_headroom([{"batch_size": {"max": 64}}]) is None  # not an LLM run: nothing to check
