"""The reference LLM: shapes and parameter counts by hand, and attention over the paged KV cache equal
to plain causal attention on the same inputs (prefill in chunks, decodes, interleaved block tables)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from reference_server.batchlog import BatchLog
from reference_server.llm.engine import LlmEngine
from reference_server.llm.metrics import LlmMetrics
from reference_server.llm.model import LlamaModel, build_model
from reference_server.llm.paged_attention import PagedKVCache
from reference_server.llm.presets import PRESETS, parameter_count
from reference_server.llm.scheduler import Scheduler, SchedulerConfig, Sequence

TINY = PRESETS["llm-tiny"]


def test_tiny_parameter_count_by_hand() -> None:
    """llm-tiny: embedding 512 x 256 = 131,072; per layer q 256x256 + k, v 2 x 256x64 + o 256x256 =
    163,840, SwiGLU 3 x 256 x 688 = 528,384, norms 512: 692,736; x 4 = 2,770,944; final norm 256;
    untied head 131,072: 3,033,344 — and the module holds exactly that many."""
    assert parameter_count(TINY) == 131_072 + 4 * 692_736 + 256 + 131_072 == 3_033_344
    with torch.device("meta"):
        model = LlamaModel(TINY)
    assert sum(p.numel() for p in model.parameters()) == 3_033_344


def test_1b_is_llama_3_2_1b_shaped() -> None:
    """llm-1b has Llama-3.2-1B's shape; its card says 1.24B parameters (tied embeddings); counted on
    the meta device (no memory)."""
    shape = PRESETS["llm-1b"]
    with torch.device("meta"):
        model = LlamaModel(shape)
    n = sum(p.numel() for p in model.parameters())
    assert n == parameter_count(shape) == 1_235_814_400
    assert model.lm_head is None and shape.kv_bytes_per_token(2) == 32_768  # the facts' KV B/token at bf16


def test_forward_shapes_and_seeded_weights() -> None:
    a = build_model(TINY, seed=1, device=torch.device("cpu"), dtype=torch.float32)
    b = build_model(TINY, seed=1, device=torch.device("cpu"), dtype=torch.float32)
    c = build_model(TINY, seed=2, device=torch.device("cpu"), dtype=torch.float32)
    tokens = torch.arange(10)
    logits = a.forward_dense(tokens)
    assert logits.shape == (10, TINY.vocab)
    assert torch.equal(logits, b.forward_dense(tokens))
    assert not torch.allclose(logits, c.forward_dense(tokens))
    assert a.layers[0].attn.k.weight.shape == (TINY.kv_dim, TINY.hidden)  # 2 KV heads of 32: GQA


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine OpenMP's second thread only contends."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> LlamaModel:
    return build_model(TINY, seed=7, device=torch.device("cpu"), dtype=torch.float32)


def make_engine(model: LlamaModel, config: SchedulerConfig) -> LlmEngine:
    cpu = torch.device("cpu")
    shape = model.shape
    cache = PagedKVCache(shape.layers, config.num_blocks, config.block_size, shape.kv_heads, shape.head_dim,
                         torch.float32, cpu)  # fmt: skip
    return LlmEngine(model, cache, Scheduler(config), LlmMetrics(shape.name), BatchLog(None), cpu, seed=0)


@pytest.mark.parametrize("budget", [16, 64])
def test_paged_attention_equals_unpaged(tiny: LlamaModel, budget: int) -> None:
    """Two sequences (37 and 21 tokens) through the scheduler with blocks of 4 and a small budget:
    prefill in chunks sharing steps, block tables interleaved in the pool, then 4 decodes each. At every
    sampled row the logits equal the dense, cache-free forward of the same tokens."""
    config = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=budget, block_size=4, num_blocks=64,
                             prefix_caching=False, max_model_len=256)  # fmt: skip
    engine, model = make_engine(tiny, config), tiny
    gen = torch.Generator().manual_seed(3)
    seqs = [Sequence(str(i), torch.randint(0, 256, (n,), generator=gen).tolist(), max_tokens=5, ignore_eos=True)
            for i, n in enumerate((37, 21))]  # fmt: skip
    for seq in seqs:
        engine.scheduler.add(seq)
    compared = 0
    with torch.inference_mode():
        while engine.scheduler.has_work:
            plan = engine.scheduler.schedule(0.0)
            tokens, positions, batch, rows, sample_seqs = engine.step_inputs(plan)
            logits = model.forward_step(tokens, positions, engine.cache, batch, rows)
            sampled = {}
            for i, seq in enumerate(sample_seqs):
                dense = model.forward_dense(torch.tensor(seq.tokens))[-1]
                torch.testing.assert_close(logits[i], dense, rtol=1e-4, atol=1e-4)
                sampled[seq] = int(dense.argmax())
                compared += 1
            engine.scheduler.finish_step(plan, sampled)
    assert compared == 10 and all(len(s.output) == 5 for s in seqs)
    assert engine.scheduler.pool.used == 0  # finished sequences gave every block back


def test_block_tables_interleave_under_chunked_prefill() -> None:
    """With a 16-token budget, sequence 0's first chunk takes blocks 0-3, then it has 16 of 37 done; the
    next step gives it 4 more blocks before sequence 1 gets any: tables are not ranges of one sequence."""
    config = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=24, block_size=4, num_blocks=64,
                             prefix_caching=False, max_model_len=256)  # fmt: skip
    sched = Scheduler(config)
    a, b = Sequence("a", list(range(30)), max_tokens=2), Sequence("b", list(range(100, 130)), max_tokens=2)
    sched.add(a)
    sched.add(b)
    plan = sched.schedule(0.0)
    assert plan.counts == [24]
    sched.finish_step(plan, {})
    plan = sched.schedule(0.0)
    assert plan.counts == [6, 18]
    assert a.blocks.table == [0, 1, 2, 3, 4, 5, 6, 7] and b.blocks.table == [8, 9, 10, 11, 12]


def greedy_outputs(model: LlamaModel, config: SchedulerConfig, prompts: list[list[int]], max_tokens: int
                   ) -> tuple[list[list[int]], LlmEngine]:  # fmt: skip
    """Run the engine's own `step` (greedy, ignore_eos) over prompts that all arrive at once."""
    from reference_server.llm.engine import EngineRequest
    from reference_server.llm.sampling import SamplingParams

    engine = make_engine(model, config)
    outputs: list[list[int]] = [[] for _ in prompts]
    for i, prompt in enumerate(prompts):
        seq = Sequence(str(i), prompt, max_tokens=max_tokens, ignore_eos=True)
        req = EngineRequest(seq, SamplingParams(max_tokens, temperature=0.0, ignore_eos=True),
                            lambda toks, reason, now, out=outputs[i]: out.extend(toks), 0.0)  # fmt: skip
        engine.requests[seq] = req
        engine.scheduler.add(seq)
    while engine.scheduler.has_work:
        engine.step()
    return outputs, engine


def test_preemption_by_recompute_and_prefix_hits_give_the_same_tokens(tiny: LlamaModel) -> None:
    """Greedy decoding is a function of the tokens: four sequences squeezed into 9 blocks of 4 (so the
    engine preempts and recomputes), and again with prefix caching on prompts sharing 12 tokens,
    produce exactly the tokens of an engine with room to spare."""
    shared = list(range(40, 52))
    prompts = [[*shared, i, i + 1, i + 2] for i in range(4)]
    roomy = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, block_size=4, num_blocks=256,
                            prefix_caching=False, max_model_len=256)  # fmt: skip
    expected, _ = greedy_outputs(tiny, roomy, prompts, 10)
    tight = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, block_size=4, num_blocks=9,
                            prefix_caching=False, max_model_len=256)  # fmt: skip
    got, engine = greedy_outputs(tiny, tight, prompts, 10)
    assert engine.scheduler.preemptions > 0 and got == expected
    cached = SchedulerConfig(max_num_seqs=1, max_num_batched_tokens=64, block_size=4, num_blocks=256,
                             prefix_caching=True, max_model_len=256)  # fmt: skip
    got, engine = greedy_outputs(tiny, cached, prompts, 10)
    assert engine.scheduler.prefix_hits == 3 * 12 and got == expected


def test_an_engine_failure_ends_open_requests_and_says_so(tiny: LlamaModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that raises stops the engine: every open request gets the "error" end (its stream sends
    an error event, /health turns 503 from `engine.failed`)."""
    import threading

    from reference_server.llm.engine import EngineRequest
    from reference_server.llm.sampling import SamplingParams

    def lost(*_: object) -> None:
        raise RuntimeError("device lost")

    monkeypatch.setattr(tiny, "forward_step", lost)
    engine = make_engine(tiny, SchedulerConfig(num_blocks=16, max_model_len=64))
    ends: list[str | None] = []
    done = threading.Event()
    seq = Sequence("x", [1, 2, 3], max_tokens=2)
    engine.start()
    engine.submit(EngineRequest(seq, SamplingParams(2), lambda _t, reason, _n: (ends.append(reason), done.set()), 0.0))
    assert done.wait(30)
    engine.stop()
    assert ends == ["error"] and engine.failed == "RuntimeError: device lost"


def test_unseeded_draws_follow_the_server_seed_and_seeded_ones_their_own() -> None:
    from reference_server.llm.sampling import SamplingParams, sample

    logits = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(4), SamplingParams(4, seed=9, generator=torch.Generator().manual_seed(9)),
              SamplingParams(4, temperature=0.0)]  # fmt: skip
    a = sample(logits.clone(), params, [0, 0, 0], torch.Generator().manual_seed(1))
    params[1].generator = torch.Generator().manual_seed(9)
    b = sample(logits.clone(), params, [0, 0, 0], torch.Generator().manual_seed(1))
    assert a == b and a[2] == int(logits[2].argmax())
    eos_heavy = torch.zeros(1, 512)
    eos_heavy[0, 256] = 100.0  # EOS nearly certain, but masked before min_tokens
    assert sample(eos_heavy, [SamplingParams(4, temperature=0.0, min_tokens=2)], [1], torch.Generator()) != [256]
    assert sample(eos_heavy, [SamplingParams(4, temperature=0.0, min_tokens=2)], [2], torch.Generator()) == [256]
