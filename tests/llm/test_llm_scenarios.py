"""serving.mode llm through the scenario file and `simulate`: issue 15's llm-check accepted as
written with the summary keys its must-show lists and the closed-form values; same seed, same
summary; bad LLM input as one line naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capsim import load_scenario, simulate
from capsim.errors import CapsimInputError

ROOT = Path(__file__).resolve().parents[2]
LLM_CHECK = ROOT / "scenarios" / "llm-check.yaml"
PERCENTILES = ("mean", "p50", "p90", "p95", "p99", "max")


def _capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_llm_check_reports_the_issue_keys_with_the_closed_form_values() -> None:
    """TTFT 56.2 ms, TPOT 5.1 ms, E2E 56.2 + 127 x 5.1 = 703.9 ms for every request (tests/llm/
    test_engine_trace.py derives them); 270 requests after the 60 s warm-up at 0.5 rps; 512 and 128
    tokens each; one engine step in progress 703.9 ms of every 2 s."""
    summary = simulate(load_scenario(LLM_CHECK)).summary
    for key, value_ms in (("ttft_ms", 56.2), ("tpot_ms", 5.1), ("latency_ms", 703.9), ("queue_wait_ms", 0.0)):
        block = summary[key]
        assert set(PERCENTILES) <= set(block)
        for name in PERCENTILES:
            assert block[name] == pytest.approx(value_ms, abs=1e-6), (key, name)
    assert summary["itl_ms"]["mean"] == pytest.approx(5.1)
    assert summary["itl_ms"]["p99"] == pytest.approx(5.1, rel=0.005)  # the loop's histogram: <= 0.5%
    assert summary["requests"]["completed"] == summary["requests"]["arrived"] == 270
    assert summary["tokens"] == {"input_per_s": 256.0, "output_per_s": 64.0, "input": 270 * 512,
                                 "output": 270 * 128}  # fmt: skip
    assert summary["kv_cache"]["preemptions"] == 0
    assert 0 < summary["kv_cache"]["utilization_mean"] < 37 / 4096
    assert summary["utilization"] == pytest.approx(0.7039 / 2)
    assert summary["slo"]["attainment"] == 1.0 and summary["slo"]["goodput_rps"] == 0.5
    cost = summary["cost"]
    assert cost["usd_per_million_output_tokens"] == pytest.approx(cost["usd"] / (270 * 128) * 1e6)
    assert cost["usd_per_million_input_tokens"] == pytest.approx(cost["usd"] / (270 * 512) * 1e6)


def test_same_seed_same_summary_and_bounded_memory_agrees() -> None:
    poisson = "workload.arrival={kind: poisson, rate_rps: 8}"
    output = "workload.tokens.output={kind: lognormal, mean: 100, cv: 1, max: 1000}"
    scenario = load_scenario(LLM_CHECK, [poisson, output])
    first, again = simulate(scenario).summary, simulate(scenario).summary
    assert first == again
    bounded = simulate(scenario, keep_requests=False).summary
    for key in ("ttft_ms", "tpot_ms", "latency_ms"):
        assert bounded[key]["mean"] == pytest.approx(first[key]["mean"], rel=1e-9)
        assert bounded[key]["p99"] == pytest.approx(first[key]["p99"], rel=0.006)
    assert simulate(scenario, seed=99).summary["ttft_ms"] != first["ttft_ms"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["serving.scheduler.max_num_seqs=512", "serving.scheduler.max_num_batched_tokens=256"], "serving.scheduler"),
        (["serving.load_balancer=fastest"], "serving"),
        (["serving.scheduler.block_size=0"], "serving.scheduler.block_size"),
        (["workload.tokens=null"], "workload.tokens"),
        (["slo={percentile: 99}"], "slo"),
    ],
)
def test_bad_llm_input_names_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(CapsimInputError) as info:
        load_scenario(LLM_CHECK, overrides)
    assert field in str(info.value)


def test_ttft_bounds_need_the_llm_mode(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["slo"] = {"ttft_ms": 100}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    done = _capsim("simulate", str(path), "--json")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "ttft_ms" in done.stderr
    assert "Traceback" not in done.stderr


def test_simulate_json_cli_on_llm_check() -> None:
    done = _capsim("simulate", str(LLM_CHECK), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    keys = {"ttft_ms", "tpot_ms", "itl_ms", "latency_ms", "queue_wait_ms", "tokens", "kv_cache", "slo", "cost"}
    assert keys <= set(summary)
    assert summary["cost"]["usd_per_million_output_tokens"] > 0
