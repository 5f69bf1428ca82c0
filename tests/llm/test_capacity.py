"""The LLM capacity estimate (capsim/serving/llm/capacity.py) against its rule worked by hand, and
the `capsim check` line it feeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim import load_scenario
from capsim.serving.llm.capacity import replica_capacity_rps
from capsim.stability import estimate_capacity
from tests.llm.engine_helpers import engine, linear_params

LLM_CHECK = Path(__file__).resolve().parents[2] / "scenarios" / "llm-check.yaml"


def test_full_engine_rule_by_hand() -> None:
    """llm-check's engine (4,096 blocks of 16, 256 seqs, budget 8,192), prompts 512, outputs 128:
    each request holds 512 + 64 = 576 tokens on average, so the KV cache keeps D = 65,536 / 576 =
    113.78 decoding (below 256); T = D x 512 / 128 = 455.1 prefill tokens per step (D + T < 8,192);
    a step takes 5 + 0.1 x 455.1 + 0.1 x 113.78 = 61.89 ms; D / (128 x 61.89 ms) = 14.36 requests/s."""
    d = 4096 * 16 / 576
    step_s = (5 + 0.1 * d * 4 + 0.1 * d) / 1000
    expected = d / (128 * step_s)
    assert expected == pytest.approx(14.36, abs=0.01)
    assert replica_capacity_rps(engine(), linear_params(), 512, 128) == pytest.approx(expected)
    # A small budget binds instead: D + T = 1,024 -> D = 1,024 x 128 / 640 = 204.8, T = 819.2.
    small = replica_capacity_rps(engine(max_num_batched_tokens=1024, kv_cache_blocks=100_000), linear_params(),
                                 512, 128)  # fmt: skip
    assert small == pytest.approx(204.8 / (128 * (5 + 81.92 + 20.48) / 1000))


def test_check_reports_the_fleets_capacity() -> None:
    scenario = load_scenario(LLM_CHECK, ["serving.replicas=3"])
    estimate = estimate_capacity(scenario)
    assert estimate.offered_rps == 0.5
    assert estimate.capacity_rps == pytest.approx(3 * 14.36, abs=0.03)
