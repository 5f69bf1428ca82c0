"""The LLM step-time rule (capsim.servicetime.llm_step): llm_linear exactly as issue 15 fixes it, the
roofline hand-computed for a tiny shape, its memory- and compute-bound regimes, tensor parallelism,
mixture-of-experts weight traffic, and the fitted form's provenance checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim.errors import CapsimInputError
from capsim.hardware.catalogue import load_catalogue
from capsim.hardware.model_catalogue import ModelShape, find_model, resolve_model
from capsim.hardware.spec import HardwareSpec
from capsim.servicetime.llm_step import (
    LlmFittedService,
    LlmLinearService,
    LlmRooflineService,
    attention_pairs_of,
    llm_step_time_s,
    step_params,
    step_time_breakdown,
)
from tests.scenario_helpers import make_scenario

MS = 1e-3
TINY = {"layers": 2, "hidden_size": 8, "intermediate_size": 16, "attention_heads": 4, "kv_heads": 2,
        "vocab_size": 10, "max_context": 4096, "params_total": 1352.0}  # fmt: skip
# Hand-derived from TINY (head dim 8 / 4 = 2; see test_model_catalogue's tiny count, 1,352 parameters):
FLOPS_PER_TOKEN = 2 * (1352 - 2 * 10 * 8)  # 2 x non-embedding parameters = 2,384
ATTN_FLOPS_PER_PAIR = 4 * 2 * 4 * 2  # 4 x layers x q heads x head dim = 64
LM_HEAD_FLOPS = 2 * 8 * 10  # per sampled position = 160
WEIGHT_BYTES = (1352 - 10 * 8) * 2  # all but the embedding table (a gather), bf16 = 2,544
KV_BYTES = 2 * 2 * 2 * 2 * 2  # K and V x layers x KV heads x head dim x 2 bytes = 32
ACT_BYTES = 2 * 8 * 2  # layers x hidden x 2 bytes = 32
PEAK, BANDWIDTH = 1e12, 100e9  # 1 TFLOPS, 100 GB/s
MFU_PREFILL, MFU_DECODE, BW_EFF = 0.5, 0.25, 0.5


def tiny() -> ModelShape:
    return resolve_model("tiny", TINY)


def tiny_gpu() -> HardwareSpec:
    def figure(value: float) -> dict[str, object]:
        return {"value": value, "source": "test", "confidence": "user"}

    return HardwareSpec.model_validate({"name": "tiny-gpu", "kind": "gpu", "fp16_tflops": figure(1.0),
                                        "memory_bandwidth_gbps": figure(100.0)})  # fmt: skip


def roofline(**fields: object) -> LlmRooflineService:
    return LlmRooflineService.model_validate({"mfu_prefill": MFU_PREFILL, "mfu_decode": MFU_DECODE,
                                              "bandwidth_efficiency": BW_EFF, **fields})  # fmt: skip


LLM_CHECK = LlmLinearService(base_ms=5.0, per_prefill_token_ms=0.1, per_decode_seq_ms=0.1)


def test_linear_is_base_plus_prefill_tokens_plus_decoding_sequences() -> None:
    params = step_params(LLM_CHECK, None, None)
    # issue 15's llm-check: a 512-token prompt's step 5 + 0.1 x 512 = 56.2 ms; one decode 5.1 ms
    assert llm_step_time_s(params, 512, 0, 512, 1) == pytest.approx(56.2 * MS, rel=1e-12)
    assert llm_step_time_s(params, 0, 1, 513, 0) == pytest.approx(5.1 * MS, rel=1e-12)
    # a mixed step: 100 prompt tokens and 7 decodes = 5 + 10 + 0.7
    assert llm_step_time_s(params, 100, 7, 2000, 1) == pytest.approx(15.7 * MS, rel=1e-12)
    assert llm_step_time_s(params, 0, 0, 0, 0) == 0.0  # an empty step takes no time


def test_linear_optional_context_and_request_terms() -> None:
    service = LlmLinearService(base_ms=5.0, per_prefill_token_ms=0.1, per_decode_seq_ms=0.1,
                               per_context_token_ms=0.001, per_request_ms=2.0)  # fmt: skip
    params = step_params(service, None, None)
    assert llm_step_time_s(params, 512, 0, 512, 1) == pytest.approx((56.2 + 0.512 + 2.0) * MS, rel=1e-12)
    assert llm_step_time_s(params, 0, 3, 3000, 0) == pytest.approx((5.3 + 3.0) * MS, rel=1e-12)


def test_attention_pairs_count_causal_query_key_pairs() -> None:
    assert attention_pairs_of(0, 4) == 4 + 3 + 2 + 1
    assert attention_pairs_of(9, 1) == 10  # a decode at context 10 attends 10 keys
    assert attention_pairs_of(100, 3) == 101 + 102 + 103


def test_roofline_decode_by_hand_is_memory_bound() -> None:
    params = step_params(roofline(), tiny(), tiny_gpu())
    # one decode at context 10 (10 context tokens, 10 attention pairs)
    compute_s = ((FLOPS_PER_TOKEN + LM_HEAD_FLOPS) + ATTN_FLOPS_PER_PAIR * 10) / (PEAK * MFU_DECODE)
    memory_s = (WEIGHT_BYTES + KV_BYTES * 10 + ACT_BYTES * 1) / (BANDWIDTH * BW_EFF)
    assert memory_s > compute_s
    assert llm_step_time_s(params, 0, 1, 10, 0, 10.0) == pytest.approx(memory_s, rel=1e-12)
    breakdown = step_time_breakdown(params, 0, 1, 10, 0, 10.0)
    assert breakdown.bound == "memory"
    assert breakdown.compute_ms == pytest.approx(compute_s * 1e3, rel=1e-9)


def test_roofline_prefill_by_hand_is_compute_bound() -> None:
    params = step_params(roofline(), tiny(), tiny_gpu())
    pairs = 100 * 101 / 2
    # one pair per context token at the decode MFU, the other 4,950 (the causal square) at the prefill MFU
    compute_s = ((FLOPS_PER_TOKEN * 100 + LM_HEAD_FLOPS + ATTN_FLOPS_PER_PAIR * (pairs - 100)) / (PEAK * MFU_PREFILL)
                 + ATTN_FLOPS_PER_PAIR * 100 / (PEAK * MFU_DECODE))  # fmt: skip
    memory_s = (WEIGHT_BYTES + KV_BYTES * 100 + ACT_BYTES * 100) / (BANDWIDTH * BW_EFF)
    assert compute_s > memory_s
    assert llm_step_time_s(params, 100, 0, 100, 1, pairs) == pytest.approx(compute_s, rel=1e-12)
    # without the pairs the rule's approximation is exact for whole prompts of equal length
    assert llm_step_time_s(params, 100, 0, 100, 1) == pytest.approx(compute_s, rel=1e-12)
    two = 2 * attention_pairs_of(0, 50)
    assert llm_step_time_s(params, 100, 0, 100, 2) == pytest.approx(llm_step_time_s(params, 100, 0, 100, 2, two))


def test_roofline_overlap_sum_and_fixed_overheads() -> None:
    params = step_params(roofline(overlap="sum", base_ms=1.0, per_request_ms=0.5), tiny(), tiny_gpu())
    compute_s = ((FLOPS_PER_TOKEN * 100 + LM_HEAD_FLOPS + ATTN_FLOPS_PER_PAIR * 4950) / (PEAK * MFU_PREFILL)
                 + ATTN_FLOPS_PER_PAIR * 100 / (PEAK * MFU_DECODE))  # fmt: skip
    memory_s = (WEIGHT_BYTES + KV_BYTES * 100 + ACT_BYTES * 100) / (BANDWIDTH * BW_EFF)
    expected = 1.0 * MS + 0.5 * MS + compute_s + memory_s
    assert llm_step_time_s(params, 100, 0, 100, 1, 5050.0) == pytest.approx(expected, rel=1e-12)


def test_tensor_parallel_divides_work_and_adds_two_all_reduces_per_layer() -> None:
    one = step_params(roofline(), tiny(), tiny_gpu(), tp=1)
    two = step_params(roofline(), tiny(), tiny_gpu(), tp=2)
    tokens = 100
    # 2 all-reduces x 2 layers: 20 us launch each, and a ring all-reduce of 2(tp-1)/tp x hidden x 2 bytes
    # per token over 450 GB/s
    allreduce_s = 2 * 2 * 20e-6 + 2 * 2 * (2 * 1 / 2 * 8 * 2) * tokens / 450e9
    sharded_s = llm_step_time_s(one, tokens, 0, tokens, 1, 5050.0) / 2  # compute-bound: FLOPs halve
    assert llm_step_time_s(two, tokens, 0, tokens, 1, 5050.0) == pytest.approx(sharded_s + allreduce_s, rel=1e-9)


def test_decode_step_time_is_flat_in_batch_until_compute_overtakes_memory() -> None:
    h100 = load_catalogue().get("H100-SXM")
    model = find_model("Llama-3.1-8B")
    params = step_params(LlmRooflineService(), model, h100)
    t1 = llm_step_time_s(params, 0, 1, 1024, 0)
    t16 = llm_step_time_s(params, 0, 16, 16 * 1024, 0)
    assert step_time_breakdown(params, 0, 16, 16 * 1024, 0).bound == "memory"
    assert t16 / t1 < 1.5  # 16x the tokens for < 1.5x the time: weights are read once per step
    big = step_time_breakdown(params, 0, 1024, 1024 * 16, 0)
    assert big.bound == "compute"


def test_mixture_of_experts_reads_the_experts_its_tokens_route_to() -> None:
    moe = resolve_model("tiny-moe", {**TINY, "experts": 4, "experts_per_token": 1, "expert_intermediate_size": 4,
                                     "params_active": 500.0, "params_total": 2 * (240 + 4 * 96) + 168.0})  # fmt: skip
    params = step_params(roofline(), moe, tiny_gpu())
    expert_bytes = 3 * 8 * 4 * 2 * 2  # one expert in both layers, bf16
    dense_bytes = (moe.params_total - 4 * expert_bytes / 2 - 10 * 8) * 2

    def memory_ms(tokens: int) -> float:
        return step_time_breakdown(params, 0, tokens, tokens, 0, float(tokens)).memory_ms

    for tokens in (1, 3, 50):
        touched = 4 * (1 - (1 - 1 / 4) ** tokens)  # expected distinct experts under uniform routing
        moved = dense_bytes + expert_bytes * touched + (KV_BYTES + ACT_BYTES) * tokens
        assert memory_ms(tokens) == pytest.approx(moved / (BANDWIDTH * BW_EFF) * 1e3, rel=1e-9)


def test_roofline_needs_a_sourced_mfu_or_one_given() -> None:
    l4 = load_catalogue().get("L4")
    model = find_model("Llama-3.2-1B")
    with pytest.raises(CapsimInputError) as err:
        step_params(LlmRooflineService(), model, l4)
    assert err.value.field == "service.mfu_prefill"
    assert step_params(LlmRooflineService(mfu_prefill=0.3, mfu_decode=0.1), model, l4).shape == (21,)


FIT = {"hardware": "H100-SXM", "model": "llama-3.1-8b", "engine": "vllm 0.11.0", "date": "2026-12-01",
       "source": "runs/h100-sweep", "fit_error": {"ttft_mape": 0.08}}  # fmt: skip


def test_fitted_evaluates_like_linear_and_refuses_what_it_was_not_fitted_on() -> None:
    fitted = LlmFittedService.model_validate({"base_ms": 5.0, "per_prefill_token_ms": 0.1, "per_decode_seq_ms": 0.1,
                                              "fitted_on": FIT})  # fmt: skip
    catalogue = load_catalogue()
    model = find_model("Llama-3.1-8B")
    params = step_params(fitted, model, catalogue.get("H100-SXM"))
    assert (params == step_params(LLM_CHECK, None, None)).all()
    with pytest.raises(CapsimInputError, match="fitted on H100-SXM, not A100-80GB"):
        step_params(fitted, model, catalogue.get("A100-80GB"))
    with pytest.raises(CapsimInputError, match=r"not Qwen2\.5-7B"):
        step_params(fitted, find_model("Qwen2.5-7B"), catalogue.get("H100-SXM"))
    with pytest.raises(CapsimInputError, match="not 2"):
        step_params(fitted, model, catalogue.get("H100-SXM"), tp=2)


def test_llm_kinds_need_the_llm_mode_in_a_scenario() -> None:
    with pytest.raises(CapsimInputError, match=r"needs serving\.mode: llm"):
        make_scenario(service={"kind": "llm_linear", "base_ms": 5, "per_prefill_token_ms": 0.1,
                               "per_decode_seq_ms": 0.1})  # fmt: skip
    with pytest.raises(CapsimInputError, match="times LLM engine steps"):
        LLM_CHECK.mean_s(1)


def test_fp8_weights_halve_the_weight_bytes_but_keep_a_16_bit_kv_cache() -> None:
    def figure(value: float) -> dict[str, object]:
        return {"value": value, "source": "test", "confidence": "user"}

    gpu = HardwareSpec.model_validate({"name": "tiny-gpu", "kind": "gpu", "fp16_tflops": figure(1.0),
                                       "fp8_tflops": figure(2.0), "memory_bandwidth_gbps": figure(100.0)})  # fmt: skip
    fp8 = step_params(roofline(precision="fp8"), tiny(), gpu)
    # weights at 1 byte, KV (vLLM's kv_cache_dtype auto) and activations at 2 bytes
    memory_s = (WEIGHT_BYTES / 2 + KV_BYTES * 10 + ACT_BYTES) / (BANDWIDTH * BW_EFF)
    assert step_time_breakdown(fp8, 0, 1, 10, 0, 10.0).memory_ms == pytest.approx(memory_s * 1e3, rel=1e-12)
    # the FP8 peak (2 TFLOPS) runs the prefill's FLOPs
    compute_s = ((FLOPS_PER_TOKEN * 100 + LM_HEAD_FLOPS + ATTN_FLOPS_PER_PAIR * 4950) / (2 * PEAK * MFU_PREFILL)
                 + ATTN_FLOPS_PER_PAIR * 100 / (2 * PEAK * MFU_DECODE))  # fmt: skip
    assert step_time_breakdown(fp8, 100, 0, 100, 1, 5050.0).compute_ms == pytest.approx(compute_s * 1e3, rel=1e-12)
    fp8_kv = step_params(roofline(precision="fp8", kv_cache_dtype="fp8"), tiny(), gpu)
    memory_fp8_kv_s = (WEIGHT_BYTES / 2 + KV_BYTES / 2 * 10 + ACT_BYTES) / (BANDWIDTH * BW_EFF)
    assert step_time_breakdown(fp8_kv, 0, 1, 10, 0, 10.0).memory_ms == pytest.approx(memory_fp8_kv_s * 1e3)


@given(prefill=st.integers(0, 20_000), decode=st.integers(0, 512), context=st.integers(0, 2_000_000),
       new=st.integers(0, 64), extra=st.integers(1, 5000), which=st.sampled_from(["prefill", "decode", "context"]))
@settings(max_examples=200, deadline=None)
def test_more_work_never_takes_less_time(prefill: int, decode: int, context: int, new: int, extra: int,
                                         which: str) -> None:  # fmt: skip
    """Property: adding prompt tokens, decoding sequences or context never shortens a step (roofline on
    Llama-3.1-8B / H100 with TP 2 and a MoE, and linear)."""
    catalogue = load_catalogue()
    models = (find_model("Llama-3.1-8B"), find_model("Mixtral-8x7B"))
    all_params = [step_params(LlmRooflineService(), m, catalogue.get("H100-SXM"), tp) for m in models for tp in (1, 2)]
    all_params.append(step_params(LLM_CHECK, None, None))
    more = {"prefill": (extra, 0, extra), "decode": (0, extra, extra), "context": (0, 0, extra)}[which]
    for params in all_params:
        before = llm_step_time_s(params, prefill, decode, context, new)
        after = llm_step_time_s(params, prefill + more[0], decode + more[1], context + more[2], new)
        assert after >= before
