"""The LLM model catalogue: shapes, names, KV bytes, parameter counts and the KV-cache block rule."""

from __future__ import annotations

import math

import pytest

from capsim.errors import CapsimInputError
from capsim.hardware.catalogue import load_catalogue
from capsim.hardware.kv_memory import (
    ACTIVATION_BYTES_DENSE,
    GIB,
    NON_TORCH_BYTES_TP,
    NON_TORCH_BYTES_TP1,
    kv_budget,
    kv_cache_blocks,
)
from capsim.hardware.model_catalogue import (
    ModelRef,
    ModelShape,
    find_model,
    iter_models,
    kv_bytes_per_token,
    resolve_model,
    shape_params,
    weight_bytes,
)
from capsim.hardware.spec import HardwareSpec

TINY = {"layers": 2, "hidden_size": 8, "intermediate_size": 16, "attention_heads": 4, "kv_heads": 2,
        "vocab_size": 10, "max_context": 64, "params_total": 1000.0}  # fmt: skip


def llama8b() -> ModelShape:
    model = find_model("Llama-3.1-8B")
    assert model is not None
    return model


def test_kv_bytes_of_llama_3_1_8b_is_128_kib_per_token_at_bf16() -> None:
    # 2 (K and V) x 32 layers x 8 KV heads x 128 head dim x 2 bytes
    assert kv_bytes_per_token(llama8b(), 2) == 2 * 32 * 8 * 128 * 2 == 131072


@pytest.mark.parametrize(("name", "kv_bytes"), [("Llama-3.1-70B", 327_680), ("Llama-3.2-1B", 32_768),
                                                ("Qwen2.5-7B", 57_344), ("Qwen3-30B-A3B", 98_304)])  # fmt: skip
def test_kv_bytes_match_the_facts_table(name: str, kv_bytes: int) -> None:
    model = find_model(name)
    assert model is not None
    assert kv_bytes_per_token(model, 2) == kv_bytes


def test_tensor_parallel_splits_kv_heads_and_replicates_when_there_are_fewer_heads_than_gpus() -> None:
    model = llama8b()  # 8 KV heads
    assert kv_bytes_per_token(model, 2, tp=2) == 131072 / 2
    assert kv_bytes_per_token(model, 2, tp=8) == 131072 / 8
    assert kv_bytes_per_token(model, 2, tp=16) == 131072 / 8  # one replicated head per GPU, not half a head


@pytest.mark.parametrize("model", list(iter_models()), ids=lambda m: m.name)
def test_parameters_counted_from_the_shape_are_within_two_percent_of_the_card(model: ModelShape) -> None:
    total, active = shape_params(model)
    assert total == pytest.approx(model.params_total, rel=0.02)
    assert active == pytest.approx(model.active_params, rel=0.02)
    assert model.source.startswith("https://huggingface.co/") and model.source.endswith("/config.json")


def test_shape_params_of_a_tiny_dense_shape_by_hand() -> None:
    model = ModelShape.model_validate({"name": "tiny", **TINY})
    # head_dim = 8 / 4 = 2; q width 8, kv width 4: attention 8*(8+2*4) + 8*8 = 192; MLP 3*8*16 = 384;
    # norms 2*8 = 16 -> 592 per layer; 2 layers 1184; embedding + LM head 2*10*8 = 160; final norm 8.
    assert shape_params(model) == (1352.0, 1352.0)


def test_shape_params_of_a_tiny_mixture_of_experts_by_hand() -> None:
    model = ModelShape.model_validate({"name": "tiny-moe", **TINY, "experts": 4, "experts_per_token": 1,
                                       "expert_intermediate_size": 4, "params_active": 500.0})  # fmt: skip
    # per layer: attention 192 + norms 16 + router 8*4 = 240, each expert 3*8*4 = 96
    total_layer, active_layer = 240 + 4 * 96, 240 + 1 * 96
    assert shape_params(model) == (2 * total_layer + 168.0, 2 * active_layer + 168.0)


def test_weight_bytes_are_published_parameters_times_element_size() -> None:
    assert weight_bytes(llama8b(), 2) == pytest.approx(16.06e9)


@pytest.mark.parametrize(
    "spelling", ["llama-3.1-8b", "LLAMA_3.1_8B", "Llama 3.1 8B", "meta-llama/Llama-3.1-8B-Instruct", "llama3.1-8b"]
)
def test_names_match_loosely_and_through_aliases(spelling: str) -> None:
    assert resolve_model(spelling).name == "Llama-3.1-8B"


def test_an_unknown_name_is_one_line_with_the_nearest_names() -> None:
    with pytest.raises(CapsimInputError) as err:
        resolve_model("llama-3.1-9b")
    assert err.value.field == "model.name"
    assert "did you mean" in str(err.value) and "Llama-3.1-8B" in str(err.value)
    assert "\n" not in str(err.value)


def test_inline_models_and_overrides() -> None:
    custom = resolve_model("my-model", TINY)
    assert (custom.name, custom.layers, custom.confidence) == ("my-model", 2, "user")
    shorter = resolve_model("llama-3.1-8b", {"max_context": 8192})
    assert (shorter.max_context, shorter.layers) == (8192, 32)
    with pytest.raises(CapsimInputError, match=r"attention_heads \(4\) must be a multiple of kv_heads \(3\)"):
        resolve_model("broken", {**TINY, "kv_heads": 3})
    with pytest.raises(CapsimInputError, match=r"model\.layers"):
        resolve_model("broken", {**TINY, "layers": 0})
    with pytest.raises(CapsimInputError, match=r"model\.layer"):
        resolve_model("llama-3.1-8b", {"layer": 3})  # a typo is refused, not ignored


def test_the_scenario_model_block_resolves_or_names_the_field() -> None:
    assert ModelRef.model_validate({"name": "qwen3-30b-a3b"}).shape().is_moe
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown model 'gpt-9'"):
        ModelRef.model_validate({"name": "gpt-9"})


def gpu(memory_gb: float) -> HardwareSpec:
    return HardwareSpec.model_validate({"name": "test-gpu", "kind": "gpu", "memory_gb": {
        "value": memory_gb, "source": "test", "confidence": "user"}})  # fmt: skip


def test_kv_cache_blocks_by_hand() -> None:
    model = resolve_model("tiny-kv", {**TINY, "params_total": 1e9})  # 2 GB of weights at bf16
    # per GPU: 40e9 x 0.9 = 36e9 usable; minus 2e9 weights, 5.5 GiB activation, 0.15 GiB non-torch;
    # a block of 16 tokens holds 16 x (2 x 2 layers x 2 heads x 2 dim x 2 bytes) = 512 bytes.
    expected = math.floor((36e9 - 2e9 - 5.5 * GIB - 0.15 * GIB) / 512)
    assert kv_cache_blocks(model, gpu(40), block_size=16) == expected
    # tensor parallel 2: half the weights and half the KV heads per GPU, the larger non-torch reserve
    expected_tp2 = math.floor((36e9 - 1e9 - ACTIVATION_BYTES_DENSE - NON_TORCH_BYTES_TP) / 256)
    assert kv_cache_blocks(model, gpu(40), block_size=16, tp=2) == expected_tp2
    assert NON_TORCH_BYTES_TP1 == 0.15 * GIB


def test_llama_8b_on_an_h100_leaves_about_50_gb_for_the_kv_cache() -> None:
    h100 = load_catalogue().get("H100-SXM")
    budget = kv_budget(llama8b(), 80e9, block_size=16)
    # 72 GB usable - 16.06 GB weights - 5.91 GB activation - 0.16 GB non-torch = 49.87 GB
    assert budget.kv_bytes == pytest.approx(49.87e9, rel=1e-3)
    assert kv_cache_blocks(llama8b(), h100, block_size=16) == budget.blocks == 23781


def test_a_model_that_does_not_fit_is_refused_in_one_line() -> None:
    with pytest.raises(CapsimInputError) as err:
        kv_cache_blocks(llama8b(), load_catalogue().get("L4"), block_size=16)
    assert err.value.field == "serving.scheduler.kv_cache_blocks"
    assert "no memory left for the KV cache" in str(err.value)
