"""A Llama-shaped decoder-only transformer defined in code, with seeded random weights (no downloads).

Pre-norm blocks: RMSNorm → attention (rotary position embeddings on Q and K, grouped-query
attention: `heads` query heads share `kv_heads` key/value heads) → residual; RMSNorm → SwiGLU MLP
(`down(silu(gate(x)) · up(x))`) → residual; a final RMSNorm and the LM head (tied to the embedding
where the shape says so). Shapes are the presets of `presets.py`.

Two forward paths over the same weights:
- `forward_step`: one engine step's flattened tokens, K and V written to and read from the paged
  cache (`paged_attention.py`); logits only for the positions that sample a token (the LM head
  runs on those alone, as in vLLM);
- `forward_dense`: one whole sequence without a cache (the unpaged reference of the tests).
Weights are drawn from `torch.Generator` seeded with `seed` on the CPU in float32, then cast and
moved, so every machine serves the same function.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from reference_server.llm.paged_attention import AttentionBatch, PagedKVCache, causal_attention, paged_attention
from reference_server.llm.presets import LlmShape

INIT_STD = 0.02  # Llama's initializer_range


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight (computed in float32)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize the last dimension."""
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding (Llama's half-split form) of x [T, heads, head_dim] at `positions` [T]."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (theta ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [T, half]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with rotary embeddings, no biases."""

    def __init__(self, shape: LlmShape) -> None:
        super().__init__()
        self.shape = shape
        self.q = nn.Linear(shape.hidden, shape.q_dim, bias=False)
        self.k = nn.Linear(shape.hidden, shape.kv_dim, bias=False)
        self.v = nn.Linear(shape.hidden, shape.kv_dim, bias=False)
        self.o = nn.Linear(shape.q_dim, shape.hidden, bias=False)

    def _qkv(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.shape
        t = x.shape[0]
        q = rotary(self.q(x).view(t, s.heads, s.head_dim), positions, s.rope_theta)
        k = rotary(self.k(x).view(t, s.kv_heads, s.head_dim), positions, s.rope_theta)
        return q, k, self.v(x).view(t, s.kv_heads, s.head_dim)

    def forward_paged(self, x: torch.Tensor, positions: torch.Tensor, cache: PagedKVCache, layer: int,
                      batch: AttentionBatch) -> torch.Tensor:  # fmt: skip
        """The step's tokens: write their K and V to the cache, attend over the cached context."""
        q, k, v = self._qkv(x, positions)
        cache.write(layer, batch.slot_mapping, k, v)
        return self.o(paged_attention(q, cache, layer, batch).reshape(x.shape[0], -1))

    def forward_dense(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One contiguous sequence, causal, no cache."""
        q, k, v = self._qkv(x, positions)
        return self.o(causal_attention(q, k, v).reshape(x.shape[0], -1))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) · up(x))."""

    def __init__(self, shape: LlmShape) -> None:
        super().__init__()
        self.gate = nn.Linear(shape.hidden, shape.ffn, bias=False)
        self.up = nn.Linear(shape.hidden, shape.ffn, bias=False)
        self.down = nn.Linear(shape.ffn, shape.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated MLP."""
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """One pre-norm decoder layer."""

    def __init__(self, shape: LlmShape) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(shape.hidden, shape.norm_eps)
        self.attn = Attention(shape)
        self.mlp_norm = RMSNorm(shape.hidden, shape.norm_eps)
        self.mlp = SwiGLU(shape)


class LlamaModel(nn.Module):
    """The decoder (see the module docstring)."""

    def __init__(self, shape: LlmShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.hidden)
        self.layers = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.norm = RMSNorm(shape.hidden, shape.norm_eps)
        self.lm_head = None if shape.tied_embeddings else nn.Linear(shape.hidden, shape.vocab, bias=False)

    @property
    def blocks(self) -> list[Block]:
        """The decoder layers, typed."""
        return [cast(Block, b) for b in self.layers]

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        return F.linear(h, self.embed.weight) if self.lm_head is None else self.lm_head(h)

    def forward_step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: PagedKVCache,
                     batch: AttentionBatch, sample_rows: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Logits [len(sample_rows), vocab] of the flattened step's rows that sample a token."""
        h = self.embed(tokens)
        for i, layer in enumerate(self.blocks):
            h = h + layer.attn.forward_paged(layer.attn_norm(h), positions, cache, i, batch)
            h = h + layer.mlp(layer.mlp_norm(h))
        return self._logits(h[sample_rows])

    def forward_dense(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] of every position of one sequence, without a cache."""
        positions = torch.arange(tokens.shape[0], device=tokens.device)
        h = self.embed(tokens)
        for layer in self.blocks:
            h = h + layer.attn.forward_dense(layer.attn_norm(h), positions)
            h = h + layer.mlp(layer.mlp_norm(h))
        return self._logits(h)


@torch.no_grad()
def build_model(shape: LlmShape, seed: int, device: torch.device, dtype: torch.dtype) -> LlamaModel:
    """The model with weights drawn N(0, 0.02²) from `seed` (norms at 1), in `dtype` on `device`."""
    with torch.device("meta"):
        model = LlamaModel(shape)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, INIT_STD, generator=gen)
    return model.to(device=device, dtype=dtype).eval()
