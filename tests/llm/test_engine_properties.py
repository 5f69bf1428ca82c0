"""Properties of the LLM engine over random small engines and workloads (hypothesis, derandomized):
every request completes or is refused, and is refused exactly when docs/model.md's rule says;
tokens are conserved (each completed request emits exactly its output tokens: output − 1 gaps);
token times are ordered; the KV block pool never holds more than its capacity and its free
queue, reference counts and prefix-cache table agree whenever the loop stops; the same input gives
the same result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsim.serving.llm.fleet import LlmFleet
from capsim.serving.llm.plane import (
    COMPLETED,
    H_COUNT,
    I_CAP_BLOCKS,
    I_RUNNING,
    I_USED_BLOCKS,
    I_WAITING,
    REJECTED,
)
from tests.llm.engine_helpers import chunks, engine, run_engine
from tests.property.strategies import settings_for


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    seqs = draw(st.integers(1, 8))
    block = draw(st.sampled_from([1, 2, 4, 16]))
    settings = engine(
        max_num_seqs=seqs,
        max_num_batched_tokens=draw(st.integers(max(seqs, 8), 300)),
        chunked_prefill=draw(st.booleans()),
        block_size=block,
        kv_cache_blocks=draw(st.integers(2, 80)),
        enable_prefix_caching=draw(st.booleans()),
        max_model_len=draw(st.sampled_from([64, 200, 10_000])),
    )
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.004, 0.02, 0.3]), min_size=n, max_size=n))
    return {
        "settings": settings,
        "arrival_s": np.cumsum(gaps),
        "prompt": draw(st.lists(st.integers(1, 150), min_size=n, max_size=n)),
        "output": draw(st.lists(st.integers(1, 30), min_size=n, max_size=n)),
        "key": draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
        "replicas": draw(st.integers(1, 3)),
        "load_balancer": draw(st.sampled_from(["round_robin", "least_outstanding", "random", "power_of_two"])),
    }


def _check_kv(fleet: LlmFleet) -> None:
    """The block pool's bookkeeping agrees with itself, slot by slot."""
    p = fleet.plane
    blocks = int(p.cfg_i[4])
    assert 0 <= p.ints[I_USED_BLOCKS] <= p.ints[I_CAP_BLOCKS]
    held = 0
    for s in range(fleet.replicas):
        refs = p.blk_ref[s * blocks : (s + 1) * blocks]
        assert (refs >= 0).all()
        n, b, seen = 0, int(p.free_head[s]), set()
        while b >= 0:  # the free queue holds exactly the blocks nobody holds
            assert p.blk_ref[b] == 0 and b not in seen
            seen.add(b)
            n += 1
            b = int(p.blk_next[b])
        assert n == p.free_n[s] == int((refs == 0).sum())
        held += blocks - n
    assert held == p.ints[I_USED_BLOCKS]
    cached = p.blk_key >= 0  # every cached block is in the table under its key
    table = dict(zip(p.ht_key[p.ht_key >= 0].tolist(), p.ht_blk[p.ht_key >= 0].tolist(), strict=True))
    assert len(table) == int(cached.sum())
    for b in np.flatnonzero(cached):
        assert table[int(p.blk_key[b])] == b


def _refused(case: dict[str, Any]) -> np.ndarray:
    """docs/model.md's refusal rule, restated."""
    s = case["settings"]
    total = np.asarray(case["prompt"]) + np.asarray(case["output"])
    over = (total > s.max_model_len) | (-(-total // s.block_size) > s.kv_cache_blocks)
    return over | (~s.chunked_prefill & (total > s.max_num_batched_tokens))


def _run(case: dict[str, Any], step_s: float | None = None) -> Any:
    arrivals = chunks(case["arrival_s"], case["prompt"], case["output"], key=case["key"], size=7)
    return run_engine(case["settings"], arrivals, replicas=case["replicas"], load_balancer=case["load_balancer"],
                      until_s=1e4, step_s=step_s, on_step=_check_kv)  # fmt: skip


@pytest.mark.slow
@given(cases())
@settings_for(80)
def test_every_request_completes_or_is_refused_and_tokens_are_conserved(case: dict[str, Any]) -> None:
    run = _run(case, step_s=0.0137)
    rows, p = run.rows, run.fleet.plane
    n = len(case["prompt"])
    assert rows["id"].tolist() == list(range(n))
    assert p.ints[I_RUNNING] == p.ints[I_WAITING] == p.ints[I_USED_BLOCKS] == 0
    refused = _refused(case)
    assert (rows["outcome"] == np.where(refused, REJECTED, COMPLETED)).all()
    done = rows["outcome"] == COMPLETED
    # each completed request emitted all its tokens: the first, then output − 1 gaps (ITL)
    assert p.itl_stats[H_COUNT] == int((rows["output"][done] - 1).sum())
    assert (rows["arrival_s"][done] <= rows["first_sched_s"][done]).all()
    assert (rows["first_sched_s"][done] < rows["first_token_s"][done]).all()  # a step takes >= 5 ms
    assert (rows["first_token_s"][done] <= rows["end_s"][done]).all()
    one = done & (rows["output"] == 1)
    np.testing.assert_array_equal(rows["first_token_s"][one], rows["end_s"][one])
    assert rows["replica"][done].min(initial=0) >= 0 and rows["replica"][done].max(initial=0) < case["replicas"]


@given(cases())
@settings_for(40)
def test_same_input_same_result_however_the_run_is_cut(case: dict[str, Any]) -> None:
    """One call to the end, or stopped every 13.7 ms (as a control plane would), gives the same rows."""
    whole = _run(case).rows
    cut = _run(case, step_s=0.0137).rows
    again = _run(case).rows
    for name in whole:
        np.testing.assert_array_equal(whole[name], again[name])
        np.testing.assert_array_equal(whole[name], cut[name])
