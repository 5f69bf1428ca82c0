"""The reference LLM server's scheduler on the simulator's hand-made traces (tests/llm/test_engine_trace.py):
the scheduler runs on a virtual clock whose step time is issue 15's `llm_linear` (5 ms + 0.1 ms per
prefill token + 0.1 ms per decoding sequence), so every token time must equal the simulator's —
the two implement the same rules (docs/model.md "LLM serving")."""

from __future__ import annotations

import numpy as np
import pytest

from reference_server.llm.scheduler import Scheduler, SchedulerConfig, Sequence, StepPlan, refusal

MS = 1e-3


def engine(**kw: object) -> SchedulerConfig:
    """The simulator test's defaults: 256 seqs, 8,192 tokens, chunked on, block 16, 4,096 blocks,
    no prefix cache."""
    base: dict[str, object] = dict(
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        chunked_prefill=True,
        block_size=16,
        num_blocks=4096,
        prefix_caching=False,
        max_model_len=131072,
    )
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


class Trace:
    """Per request: arrival, first scheduled, first token and end times (s); every step's plan."""

    def __init__(self, n: int) -> None:
        self.arrival_s = np.zeros(n)
        self.first_token_s = np.full(n, np.nan)
        self.end_s = np.full(n, np.nan)
        self.first_sched_s = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=int)
        self.plans: list[StepPlan] = []
        self.refused: list[int] = []

    @property
    def ttft_ms(self) -> np.ndarray:
        return (self.first_token_s - self.arrival_s) / MS

    @property
    def e2e_ms(self) -> np.ndarray:
        return (self.end_s - self.arrival_s) / MS

    @property
    def queue_wait_ms(self) -> np.ndarray:
        return (self.first_sched_s - self.arrival_s) / MS


def run(
    config: SchedulerConfig, arrival_s: list[float], prompts: list[list[int]], outputs: list[int]
) -> tuple[Trace, Scheduler]:
    """Drive the scheduler: an idle engine starts a step at an arrival instant after every request of
    that instant has joined; a busy one admits arrivals at its next step boundary (arrivals at a
    step's end join the next step). Each sampled token is a fresh id (no accidental prefix sharing)."""
    sched = Scheduler(config)
    trace = Trace(len(arrival_s))
    trace.arrival_s[:] = arrival_s
    order = sorted(range(len(arrival_s)), key=lambda i: arrival_s[i])
    index: dict[Sequence, int] = {}
    now, k, fresh = 0.0, 0, 1_000_000
    while k < len(order) or sched.has_work:
        if not sched.has_work:
            now = max(now, arrival_s[order[k]])
        while k < len(order) and arrival_s[order[k]] <= now + 1e-12:
            i = order[k]
            k += 1
            if refusal(config, len(prompts[i]), outputs[i]) is not None:
                trace.refused.append(i)
                continue
            seq = Sequence(str(i), list(prompts[i]), max_tokens=outputs[i], ignore_eos=True, arrival_s=arrival_s[i])
            index[seq] = i
            sched.add(seq)
        if not sched.has_work:
            continue
        plan = sched.schedule(now)
        for seq in plan.preempted:
            trace.preemptions[index[seq]] += 1
        if plan.empty:
            assert k < len(order), "work left but nothing schedulable and no arrival to come"
            now = arrival_s[order[k]]
            continue
        trace.plans.append(plan)
        for seq in plan.seqs:
            if np.isnan(trace.first_sched_s[index[seq]]):
                trace.first_sched_s[index[seq]] = seq.first_scheduled_s
        now += (5.0 + 0.1 * plan.prefill_tokens + 0.1 * plan.decode_seqs) * MS
        sampled = {}
        for seq in plan.seqs:
            if plan.samples(seq):
                fresh += 1
                sampled[seq] = fresh
                if not seq.output:
                    trace.first_token_s[index[seq]] = now
        for seq in sched.finish_step(plan, sampled):
            trace.end_s[index[seq]] = now
    return trace, sched


def prompts(n: int, length: int | list[int], start: int = 0) -> list[list[int]]:
    """n distinct prompts (disjoint token ids)."""
    lengths = [length] * n if isinstance(length, int) else length
    return [[start + 100_000 * (i + 1) + t for t in range(lengths[i])] for i in range(n)]


def test_light_load_llm_check_ttft_tpot_e2e_exact() -> None:
    """llm-check: TTFT 5 + 0.1 x 512 = 56.2 ms, then 127 decode steps of 5.1 ms: E2E 703.9 ms."""
    trace, _ = run(engine(chunked_prefill=False), [2.0 * i for i in range(10)], prompts(10, 512), [128] * 10)
    np.testing.assert_allclose(trace.ttft_ms, 56.2, rtol=1e-9)
    np.testing.assert_allclose(trace.e2e_ms, 56.2 + 127 * 5.1, rtol=1e-9)
    np.testing.assert_allclose(trace.queue_wait_ms, 0.0, atol=1e-9)


def test_chunked_prefill_splits_a_prompt_by_the_token_budget() -> None:
    """1,000 tokens under a 512 budget: 512 then 488 (56.2 + 53.8 ms), first token at 110 ms;
    refused without chunking."""
    trace, _ = run(engine(max_num_batched_tokens=512), [0.0], prompts(1, 1000), [3])
    np.testing.assert_allclose(trace.ttft_ms, [110.0])
    np.testing.assert_allclose(trace.e2e_ms, [110.0 + 2 * 5.1])
    assert [(p.prefill_tokens, p.decode_seqs) for p in trace.plans] == [(512, 0), (488, 0), (0, 1), (0, 1)]
    refused, _ = run(engine(max_num_batched_tokens=512, chunked_prefill=False), [0.0], prompts(1, 1000), [3])
    assert refused.refused == [0]


def test_chunk_shares_the_budget_with_running_decodes() -> None:
    """A (100) runs; B (600) at 1 ms takes 511 of step 2's budget beside A's decode, 89 in step 3: TTFT 84.2 ms."""
    trace, _ = run(engine(max_num_batched_tokens=512), [0.0, 0.001], prompts(2, [100, 600]), [10, 2])
    np.testing.assert_allclose(trace.ttft_ms, [15.0, 85.2 - 1.0])
    np.testing.assert_allclose(trace.queue_wait_ms, [0.0, 14.0])
    assert [(p.prefill_tokens, p.decode_seqs) for p in trace.plans[:3]] == [(100, 0), (511, 1), (89, 1)]


def test_a_burst_that_exactly_fills_the_token_budget() -> None:
    """16 x 512 = 8,192 in one step (824.2 ms); the 17th waits for step 2 (57.8 ms)."""
    trace, _ = run(engine(chunked_prefill=False), [0.0] * 17, prompts(17, 512), [4] * 17)
    np.testing.assert_allclose(trace.ttft_ms[:16], 824.2)
    np.testing.assert_allclose(trace.ttft_ms[16], 824.2 + 57.8)
    np.testing.assert_allclose(trace.e2e_ms[:16], 824.2 + 57.8 + 2 * 6.7)


def test_max_num_seqs_holds_a_request_back_until_one_finishes() -> None:
    """max_num_seqs 1: B is admitted at the boundary where A completes (25.2 ms)."""
    trace, _ = run(engine(max_num_seqs=1), [0.0, 0.0], prompts(2, 100), [3, 3])
    np.testing.assert_allclose(trace.e2e_ms, [25.2, 50.4])
    np.testing.assert_allclose(trace.queue_wait_ms, [0.0, 25.2])


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_preemption_by_recompute_in_vllm_order(prefix_caching: bool) -> None:
    """Blocks of 4, 6 blocks, A and B (8 + 8): step 6 preempts B (the last running); nobody is admitted
    that step; B recomputes 13 tokens after A ends at 42.7 ms (6.3 ms), or with prefix caching only the
    5 past its two still-cached full blocks (5.5 ms)."""
    trace, sched = run(engine(block_size=4, num_blocks=6, prefix_caching=prefix_caching), [0.0, 0.0],
                       prompts(2, 8), [8, 8])  # fmt: skip
    np.testing.assert_allclose(trace.ttft_ms, [6.6, 6.6])
    recompute_ms = 5.5 if prefix_caching else 6.3
    np.testing.assert_allclose(trace.e2e_ms, [42.7, 42.7 + recompute_ms + 10.2])
    assert trace.preemptions.tolist() == [0, 1]
    step6 = trace.plans[5]
    assert [s.request_id for s in step6.seqs] == ["0"] and step6.decode_seqs == 1
    assert sched.prefix_hits == (8 if prefix_caching else 0)
    assert sched.pool.used == 0 and sched.pool.free == 6


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_prefix_cache_skips_the_shared_full_blocks(prefix_caching: bool) -> None:
    """Turn 1: prompt 32, output 2 (done at 13.3 ms). Turn 2 at 100 ms carries turn 1's prompt and 8 more
    tokens: its two full blocks hit, so it prefills 8 tokens: TTFT 5.8 ms (9.0 without the cache). An
    unrelated 40-token prompt gets no hit. The server hashes contents where the simulator uses keys."""
    turn1 = prompts(1, 32)[0]
    turn2 = [*turn1, 7, 7, 7, 7, 8, 8, 8, 8]
    other = prompts(1, 40, start=50)[0]
    trace, _ = run(engine(prefix_caching=prefix_caching), [0.0, 0.1, 0.2], [turn1, turn2, other], [2, 2, 2])
    np.testing.assert_allclose(trace.ttft_ms, [8.2, 5.8 if prefix_caching else 9.0, 9.0])
    np.testing.assert_allclose(trace.e2e_ms[0], 13.3)


def test_prompts_over_the_context_are_refused_at_arrival() -> None:
    """max_model_len 1,000: 900 + 101 refused, 900 + 100 served; 160 + 10 needs 11 blocks of 16 > 10: refused."""
    trace, _ = run(engine(max_model_len=1000), [0.0, 0.0], prompts(2, 900), [101, 100])
    assert trace.refused == [0] and not np.isnan(trace.end_s[1])
    small, _ = run(engine(num_blocks=10), [0.0, 0.0], prompts(2, [150, 160]), [10, 10])
    assert small.refused == [1] and not np.isnan(small.end_s[0])


def test_requests_arriving_at_one_instant_join_the_idle_engines_first_step() -> None:
    """Three at t = 0 share one step (35 ms); one arriving at exactly 35 ms joins step 2 (15.3 ms)."""
    trace, _ = run(engine(chunked_prefill=False), [0.0, 0.0, 0.0, 0.035], prompts(4, 100), [2] * 4)
    np.testing.assert_allclose(trace.ttft_ms, [35.0, 35.0, 35.0, 15.3])
    np.testing.assert_allclose(trace.queue_wait_ms, 0.0, atol=1e-9)


def test_eos_stops_unless_ignored_and_not_before_min_tokens() -> None:
    """A sequence stops at EOS ("stop"), at max_tokens ("length"); ignore_eos and min_tokens hold EOS back."""
    from reference_server.llm.scheduler import stop_reason

    seq = Sequence("a", [1, 2], max_tokens=5, min_tokens=2, eos_id=9)
    seq.output = [9]
    assert stop_reason(seq, 9, 100) is None  # before min_tokens
    seq.output = [3, 9]
    assert stop_reason(seq, 9, 100) == "stop"
    seq.ignore_eos = True
    assert stop_reason(seq, 9, 100) is None
    seq.output = [3, 9, 9, 9, 9]
    assert stop_reason(seq, 9, 100) == "length"
    seq.output = [3]
    assert stop_reason(seq, 3, 3) == "length"  # max_model_len reached
