"""Trace tests of the LLM engine: tiny workloads whose every token time follows by hand from the
scheduling rules of docs/model.md ("LLM serving") and issue 15's `llm_linear` step time
(base 5 ms + 0.1 ms per prefill token + 0.1 ms per decoding sequence, unless stated)."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.serving.llm.fleet import Sessions
from capsim.serving.llm.plane import COMPLETED, I_PREEMPTIONS, I_PREFIX_HITS, REJECTED
from tests.llm.engine_helpers import chunks, engine, run_engine


def test_light_load_llm_check_ttft_tpot_e2e_exact() -> None:
    """llm-check: 512-token prompts, 128 output tokens, one every 2 s, chunked prefill off.
    A request arrives at an idle engine: its step starts at once and prefills all 512 tokens:
    5 + 0.1 x 512 = 56.2 ms, at whose end the first token comes (TTFT 56.2 ms). Each of the 127
    later tokens takes one decode step of 5 + 0.1 x 1 = 5.1 ms (TPOT 5.1 ms), so
    E2E = 56.2 + 127 x 5.1 = 703.9 ms, well before the next arrival 2 s later: no queueing."""
    run = run_engine(engine(chunked_prefill=False), chunks(np.arange(50) * 2.0, 512, 128))
    assert (run.rows["outcome"] == COMPLETED).all()
    np.testing.assert_allclose(run.ttft_ms, 56.2, rtol=1e-9)
    np.testing.assert_allclose(run.e2e_ms, 56.2 + 127 * 5.1, rtol=1e-9)
    tpot_ms = (run.e2e_ms - run.ttft_ms) / 127
    np.testing.assert_allclose(tpot_ms, 5.1, rtol=1e-9)
    np.testing.assert_allclose(run.queue_wait_ms, 0.0, atol=1e-9)


def test_chunked_prefill_splits_a_prompt_by_the_token_budget() -> None:
    """A 1,000-token prompt under a 512-token budget: step 1 prefills 512 (5 + 51.2 = 56.2 ms), step 2
    the other 488 (5 + 48.8 = 53.8 ms) and emits the first token at 110 ms; then 5.1 ms decode
    steps. Without chunked prefill the same prompt can never fit a step: refused at arrival."""
    run = run_engine(engine(max_num_batched_tokens=512), chunks([0.0], 1000, 3))
    np.testing.assert_allclose(run.ttft_ms, [56.2 + 53.8])
    np.testing.assert_allclose(run.e2e_ms, [110.0 + 2 * 5.1])
    refused = run_engine(engine(max_num_batched_tokens=512, chunked_prefill=False), chunks([0.0], 1000, 3))
    assert refused.rows["outcome"].tolist() == [REJECTED]


def test_chunk_shares_the_budget_with_running_decodes() -> None:
    """Request A (prompt 100) runs; B (prompt 600) arrives at 1 ms, during A's first step (5 + 10 = 15 ms).
    Step 2 (at 15 ms): A decodes (1 token), B takes the remaining 511 of the 512 budget:
    5 + 51.1 + 0.1 = 56.2 ms, no token for B; step 3: A decodes, B's last 89 tokens:
    5 + 8.9 + 0.1 = 14.0 ms -> B's first token at 15 + 56.2 + 14.0 = 85.2 ms."""
    run = run_engine(engine(max_num_batched_tokens=512), chunks([0.0, 0.001], [100, 600], [10, 2]))
    np.testing.assert_allclose(run.ttft_ms, [15.0, 85.2 - 1.0])
    np.testing.assert_allclose(run.queue_wait_ms, [0.0, 14.0])


def test_a_burst_that_exactly_fills_the_token_budget() -> None:
    """16 prompts of 512 arrive together: 16 x 512 = 8,192 = the budget, so one step prefills them
    all (5 + 819.2 = 824.2 ms) and each gets its first token then. A 17th arriving with them waits:
    step 2 holds 16 decodes and its whole prompt (5 + 51.2 + 1.6 = 57.8 ms): TTFT 882.0 ms."""
    run = run_engine(engine(chunked_prefill=False), chunks(np.zeros(17), 512, 4))
    np.testing.assert_allclose(run.ttft_ms[:16], 824.2)
    np.testing.assert_allclose(run.ttft_ms[16], 824.2 + 57.8)
    np.testing.assert_allclose(run.queue_wait_ms, [0.0] * 16 + [824.2])
    # the 16 then decode alongside: steps 3 and 4 are 5 + 1.7 ms (16 decodes + the 17th's)
    np.testing.assert_allclose(run.e2e_ms[:16], 824.2 + 57.8 + 2 * 6.7)


def test_max_num_seqs_holds_a_request_back_until_one_finishes() -> None:
    """max_num_seqs 1: B (arriving with A) is admitted at the step boundary where A completes:
    A: 5 + 10 = 15 ms prefill, 2 decodes of 5.1 ms -> ends at 25.2 ms; B's prefill starts then."""
    run = run_engine(engine(max_num_seqs=1), chunks([0.0, 0.0], 100, 3))
    np.testing.assert_allclose(run.e2e_ms, [25.2, 50.4])
    np.testing.assert_allclose(run.queue_wait_ms, [0.0, 25.2])


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_preemption_by_recompute_in_vllm_order(prefix_caching: bool) -> None:
    """Blocks of 4 tokens, 6 blocks. A and B (prompt 8, output 8) arrive at 0.
    Step 1: both prefill (2 blocks each; 5 + 1.6 = 6.6 ms), first tokens at 6.6 ms.
    Steps 2-5 decode both (5.2 ms each): at step 2 each needs a third block (9 tokens): 6 used.
    Step 6: A needs a fourth block (13 tokens), none free: the last running request, B, is
    preempted (its 3 blocks freed, B to the front of waiting); A decodes alone (5.1 ms) and nobody
    is admitted in a step with a preemption. Steps 7-8: B's 13 tokens need 4 blocks, 2 are free:
    it waits. A's last token ends step 8: E2E 6.6 + 4 x 5.2 + 3 x 5.1 = 42.7 ms; 6 blocks free.
    Step 9: B recomputes prompt + 5 generated = 13 tokens (5 + 1.3 = 6.3 ms) and emits its 6th
    token; two decode steps of 5.1 ms end it at 42.7 + 6.3 + 10.2 = 59.2 ms.
    With prefix caching B's first two full blocks are still cached (its third was evicted when
    A took a block in step 6): step 9 recomputes only 13 - 8 = 5 tokens (5.5 ms): 58.4 ms."""
    run = run_engine(engine(block_size=4, kv_cache_blocks=6, enable_prefix_caching=prefix_caching),
                     chunks([0.0, 0.0], 8, 8))  # fmt: skip
    np.testing.assert_allclose(run.ttft_ms, [6.6, 6.6])
    recompute_ms = 5.5 if prefix_caching else 6.3
    np.testing.assert_allclose(run.e2e_ms, [42.7, 42.7 + recompute_ms + 10.2])
    assert run.rows["preempted"].tolist() == [0, 1]
    assert run.fleet.plane.ints[I_PREEMPTIONS] == 1
    assert run.fleet.plane.ints[I_PREFIX_HITS] == (8 if prefix_caching else 0)


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_prefix_cache_skips_the_shared_full_blocks(prefix_caching: bool) -> None:
    """Two turns of one session (same prefix key), block size 16. Turn 1: prompt 32, output 2:
    prefill 5 + 3.2 = 8.2 ms, one decode 5.1 ms: done at 13.3 ms with 33 tokens computed, blocks 0
    and 1 full and cached. Turn 2 at 100 ms carries the conversation (prompt 40): its first two
    blocks hit, at most (40 - 1) // 16 = 2, so it prefills 40 - 32 = 8 tokens: TTFT 5.8 ms
    (9.0 ms without the cache). An unrelated request (another key) gets no hit."""
    settings = engine(enable_prefix_caching=prefix_caching)
    run = run_engine(settings, chunks([0.0, 0.1, 0.2], [32, 40, 40], 2, key=[7, 7, 9]))
    np.testing.assert_allclose(run.ttft_ms, [8.2, 5.8 if prefix_caching else 9.0, 9.0])
    np.testing.assert_allclose(run.e2e_ms[0], 13.3)


def test_prompts_over_the_context_are_refused_at_arrival() -> None:
    """max_model_len 1,000: prompt + output 1,001 is refused (vLLM's API server answers 400), 1,000
    is served; so is a request needing more KV blocks than a replica has (block 16, 10 blocks)."""
    run = run_engine(engine(max_model_len=1000), chunks([0.0, 0.0], [900, 900], [101, 100]))
    assert run.rows["outcome"].tolist() == [REJECTED, COMPLETED]
    small = run_engine(engine(kv_cache_blocks=10), chunks([0.0, 0.0], [150, 160], [10, 10]))
    assert small.rows["outcome"].tolist() == [COMPLETED, REJECTED]


def test_requests_arriving_at_one_instant_join_the_idle_engines_first_step() -> None:
    """Three requests at t = 0 (chunked off, ample budget): one step prefills all three (5 + 30 =
    35 ms); one arriving at exactly 35 ms joins step 2 with the three decodes: 5 + 10 + 0.3 = 15.3 ms."""
    run = run_engine(engine(chunked_prefill=False), chunks([0.0, 0.0, 0.0, 0.035], 100, 2))
    np.testing.assert_allclose(run.ttft_ms, [35.0, 35.0, 35.0, 15.3])
    np.testing.assert_allclose(run.queue_wait_ms, 0.0, atol=1e-9)


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_a_sessions_next_turn_arrives_a_think_time_after_the_reply_and_hits_the_cache(prefix_caching: bool) -> None:
    """One session of three turns (turn = request id 0, 1, 2), think time 100 ms, the session's prefix
    key 1. Turn 0 (prompt 32, output 2) ends at 8.2 + 5.1 = 13.3 ms with blocks 0 and 1 full and
    cached. Turn 1 arrives at 113.3 ms with the conversation so far: 32 + 2 + 8 new = 42 tokens; it
    hits min(2, (42 − 1) // 16) = 2 blocks and prefills 10 tokens (5 + 1.0 = 6.0 ms; 9.2 ms without the
    cache), then one decode: ends at 113.3 + 6.0 + 5.1 = 124.4 ms (127.6 without). Turn 2 would arrive
    100 ms later, past the end of arrivals (200 ms): it is not sent."""
    sessions = Sessions(prompt=np.array([32, 42, 52]), output=np.array([2, 2, 2]), think_s=np.array([0.0, 0.1, 0.1]),
                        next_turn=np.array([1, 2, -1]))  # fmt: skip
    run = run_engine(engine(enable_prefix_caching=prefix_caching), chunks([0.0], 32, 2, key=[1]),
                     sessions=sessions, arrivals_end_s=0.2)  # fmt: skip
    assert run.rows["id"].tolist() == [0, 1]
    ttft_1 = 6.0 if prefix_caching else 9.2
    np.testing.assert_allclose(run.rows["arrival_s"] * 1000, [0.0, 113.3])
    np.testing.assert_allclose(run.ttft_ms, [8.2, ttft_1])
    np.testing.assert_allclose(run.rows["end_s"] * 1000, [13.3, 113.3 + ttft_1 + 5.1])


def test_more_requests_in_flight_than_rows_allocated_grow_the_plane() -> None:
    """3,000 requests at once (the plane starts with 1,024 request rows): every one completes, and
    they are first scheduled in arrival order (FCFS), 256 at a time (max_num_seqs)."""
    run = run_engine(engine(max_num_seqs=256), chunks(np.zeros(3000), 10, 2))
    assert (run.rows["outcome"] == COMPLETED).all()
    assert (np.diff(run.rows["first_sched_s"]) >= 0).all()
    assert np.unique(run.rows["first_sched_s"][:512]).size == 2  # two admission waves of 256
