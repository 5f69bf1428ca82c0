"""How long does one step of the reference LLM server take, and how much of it is Python around the
model? The shape of the measured step time that capsim's `llm_linear` (base + per prefill token +
per decoding sequence) is fitted to.

In process (no HTTP), on the engine's own `step`: for each prompt length T one step prefilling a
T-token prompt, and for each batch B one step decoding B sequences at context C. Each point is the
median of `--repeats` steps; the table gives the step time, the part spent in the model's forward
pass (the rest is scheduling, building the step's inputs, sampling and emitting), and two fits that
minimise relative error: `llm_linear` (base + per prefill token + per decoding sequence) and the same
plus a term per causal attention pair (the step log's `attention_pairs`), with each point's residual.

    python benchmarks/llm_server_steps.py                      # llm-tiny on the CPU, ~1 min on 2 vCPUs
    python benchmarks/llm_server_steps.py --model llm-1b --device cuda --prefill 128,512,2048 --batch 1,16,64,256
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from reference_server.batchlog import BatchLog
from reference_server.llm.engine import EngineRequest, LlmEngine
from reference_server.llm.metrics import LlmMetrics
from reference_server.llm.model import build_model
from reference_server.llm.paged_attention import PagedKVCache
from reference_server.llm.presets import PRESETS
from reference_server.llm.sampling import SamplingParams
from reference_server.llm.scheduler import Scheduler, SchedulerConfig, Sequence, StepPlan
from reference_server.models import DTYPES, resolve_device


def timed_step(engine: LlmEngine) -> tuple[float, float, StepPlan]:
    """One engine step: (wall seconds, seconds in the model's forward, its plan)."""
    forward = engine.model.forward_step
    spent = [0.0]

    def timed(*args: object) -> torch.Tensor:
        t0 = time.perf_counter()
        out = forward(*args)  # type: ignore[arg-type]
        if out.is_cuda:
            torch.cuda.synchronize()
        spent[0] += time.perf_counter() - t0
        return out

    engine.model.forward_step = timed  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        plan = engine.step()
        wall = time.perf_counter() - t0
    finally:
        del engine.model.forward_step
    return wall, spent[0], plan


def add(engine: LlmEngine, name: str, prompt_len: int, max_tokens: int) -> Sequence:
    seq = Sequence(name, [i % 256 for i in range(prompt_len)], max_tokens=max_tokens, ignore_eos=True)
    engine.requests[seq] = EngineRequest(seq, SamplingParams(max_tokens, temperature=0.0, ignore_eos=True),
                                         lambda *_: None, time.monotonic())  # fmt: skip
    engine.scheduler.add(seq)
    return seq


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llm-tiny", choices=tuple(PRESETS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prefill", default="16,64,256,1024", help="prompt lengths, one prefill step each")
    p.add_argument("--batch", default="1,4,16,64", help="decode batch sizes")
    p.add_argument("--context", type=int, default=256, help="context of each decoding sequence")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    shape = PRESETS[args.model]
    model = build_model(shape, 1, device, dtype)
    prefills = [int(x) for x in args.prefill.split(",")]
    batches = [int(x) for x in args.batch.split(",")]
    budget = max(max(prefills), max(batches) * args.context)
    blocks_needed = (max(batches) * (args.context + args.repeats + 2) + max(prefills)) // 16 + 64
    config = SchedulerConfig(max_num_seqs=max(batches), max_num_batched_tokens=budget, block_size=16,
                             num_blocks=blocks_needed, prefix_caching=False,
                             max_model_len=max(max(prefills), args.context) + args.repeats + 8)  # fmt: skip
    cache = PagedKVCache(shape.layers, config.num_blocks, 16, shape.kv_heads, shape.head_dim, dtype, device)

    def fresh() -> LlmEngine:
        return LlmEngine(model, cache, Scheduler(config), LlmMetrics(shape.name), BatchLog(None), device, 0)

    rows: list[tuple[str, StepPlan, float, float]] = []
    fresh_engine = fresh()
    add(fresh_engine, "warm", 32, 3)
    while fresh_engine.scheduler.has_work:
        fresh_engine.step()
    for t in prefills:
        walls, fwds = [], []
        for r in range(args.repeats):
            engine = fresh()
            add(engine, f"p{r}", t, 1)
            wall, fwd, plan = timed_step(engine)
            walls.append(wall)
            fwds.append(fwd)
        rows.append((f"prefill {t}", plan, statistics.median(walls), statistics.median(fwds)))
    for b in batches:
        engine = fresh()
        for i in range(b):
            add(engine, f"d{i}", args.context, args.repeats + 2)
        engine.step()  # the prefills of all b prompts
        walls, fwds = [], []
        for _ in range(args.repeats):
            wall, fwd, plan = timed_step(engine)
            assert plan.prefill_tokens == 0 and plan.decode_seqs == b
            walls.append(wall)
            fwds.append(fwd)
        rows.append((f"decode {b} @ {args.context}", plan, statistics.median(walls), statistics.median(fwds)))
    y = np.array([wall for _, _, wall, _ in rows])
    x = np.array([[1.0, p.prefill_tokens, p.decode_seqs, p.attention_pairs] for _, p, _, _ in rows])
    fits = {}
    for name, cols in (("llm_linear", 3), ("+ attention pairs", 4)):
        coef, *_ = np.linalg.lstsq(x[:, :cols] / y[:, None], np.ones_like(y), rcond=None)  # relative error
        fits[name] = (coef, x[:, :cols] @ coef)
    print(f"{args.model} on {device} ({str(dtype).removeprefix('torch.')}, {args.threads} thread(s)), "
          f"median of {args.repeats} steps")  # fmt: skip
    print("| step | time ms | in forward | llm_linear residual | + attention pairs residual |")
    print("|---|---|---|---|---|")
    for i, (name, _, wall, fwd) in enumerate(rows):
        res = [(f[i] - wall) / wall for _, f in fits.values()]
        print(f"| {name} | {wall * 1e3:.2f} | {fwd / wall:.0%} | {res[0]:+.1%} | {res[1]:+.1%} |")
    for name, (coef, f) in fits.items():
        terms = ", ".join(f"{c * 1e3:.4g}" for c in coef)
        print(f"{name}: [base, per prefill token, per decoding sequence(, per attention pair)] ms = [{terms}]; "
              f"largest |residual| {np.max(np.abs(f - y) / y):.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
