"""The LLM engine against closed forms: with `max_num_seqs: 1` a replica serves one request at a
time, from the step that admits it to the step that emits its last token, and admits the next at
that step boundary; its service time is prefill + (output − 1) decode steps. Under Poisson arrivals
that is an M/G/1 queue whose mean wait (arrival → first scheduled step, the engine's queue wait)
is Pollaczek–Khinchine's λE[S²] / (2(1 − ρ)), and with fixed token counts an M/D/1 queue whose whole
waiting-time distribution is Erlang's formula. Tolerances: 95% confidence intervals over
independent replications (tests/theory/replications.py)."""

from __future__ import annotations

import numpy as np

from tests.llm.engine_helpers import chunks, engine, run_engine
from tests.theory import formulas as f
from tests.theory.replications import assert_matches

REPLICATIONS = 12
CUSTOMERS = 20_000
PROMPT = 100
PREFILL_S = (5.0 + 0.1 * PROMPT) / 1000  # one step prefills the whole prompt
DECODE_S = 5.1 / 1000  # 5 ms + 0.1 ms for the one decoding sequence


def _waits_s(lam: float, output: np.ndarray | int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arrival_s = np.cumsum(rng.exponential(1 / lam, CUSTOMERS))
    out = output if isinstance(output, int) else rng.choice(output, CUSTOMERS)
    run = run_engine(engine(max_num_seqs=1), chunks(arrival_s, PROMPT, out, size=4096))
    warm = CUSTOMERS // 10
    return (run.queue_wait_ms / 1000)[warm:]


def test_one_sequence_at_a_time_is_md1() -> None:
    """Fixed 100-token prompts and 10 output tokens: D = 15 + 9 x 5.1 = 60.9 ms; ρ = 0.6."""
    d_s = PREFILL_S + 9 * DECODE_S
    lam = 0.6 / d_s
    waits = [_waits_s(lam, 10, seed) for seed in range(REPLICATIONS)]
    assert_matches(np.array([w.mean() for w in waits]), f.md1_wait_mean(lam, d_s), "LLM M/D/1: Wq",
                   max_rel_half_width=0.05)  # fmt: skip
    assert_matches(np.array([np.mean(w == 0) for w in waits]), 0.4, "LLM M/D/1: P(Wq = 0)")
    for t_over_d in (0.5, 1.0, 3.0):
        t = t_over_d * d_s
        assert_matches(np.array([np.mean(w <= t) for w in waits]), f.md1_wait_cdf(lam, d_s, t),
                       f"LLM M/D/1: P(Wq <= {t_over_d} D)")  # fmt: skip


def test_one_sequence_at_a_time_with_random_output_is_mg1() -> None:
    """Output lengths uniform on 2..40: S = 15 ms + (output − 1) x 5.1 ms, ρ = 0.7; P-K mean wait."""
    outputs = np.arange(2, 41)
    service_s = PREFILL_S + (outputs - 1) * DECODE_S
    mean_s, second_s2 = float(service_s.mean()), float((service_s**2).mean())
    lam = 0.7 / mean_s
    waits = [_waits_s(lam, outputs, 100 + seed) for seed in range(REPLICATIONS)]
    assert_matches(np.array([w.mean() for w in waits]), f.mg1_wait_mean(lam, mean_s, second_s2), "LLM M/G/1: Wq",
                   max_rel_half_width=0.06)  # fmt: skip
