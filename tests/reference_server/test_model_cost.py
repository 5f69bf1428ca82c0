"""The model cost `capsim profile` records: counted on the model, equal to hand counts where they are easy."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from reference_server.model_cost import model_cost


def test_mlp_cost_equals_the_hand_count() -> None:
    cost = model_cost("mlp")
    # 64 -> 256 -> 256 -> 1, a multiply-add counted as 2.
    assert cost["flops_per_item"] == 2 * (64 * 256 + 256 * 256 + 256 * 1)
    assert cost["weight_bytes"] == 4 * (64 * 256 + 256 + 256 * 256 + 256 + 256 + 1)
    assert cost["bytes_precision"] == "fp32"


def test_transformer_attention_is_counted_not_hidden_by_the_fast_path() -> None:
    d, tokens, layers = 128, 32, 2
    projections_and_ffn = layers * tokens * 2 * (4 * d * d + 2 * d * 4 * d)
    assert model_cost("transformer")["flops_per_item"] >= projections_and_ffn


def test_cnn_cost_counts_its_convolutions_and_head() -> None:
    cost = model_cost("cnn")
    head = 2 * (64 * 4 * 4 * 4096 + 4096 * 4096 + 4096 * 10)
    assert cost["flops_per_item"] > head  # the convolutions come on top of the 4096-wide head
    assert cost["weight_bytes"] == pytest.approx(4 * 21044266)  # the profile's own parameter count
