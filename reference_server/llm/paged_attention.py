"""The paged KV cache's storage on the device, and attention that gathers keys and values from it.

The cache holds, per layer, `num_blocks × block_size` token slots of K and of V
(`[layers, num_blocks · block_size, kv_heads, head_dim]`). Token t of a sequence lives in slot
`block_table[t // block_size] · block_size + t % block_size` — the block table is the scheduler's
(`block_pool.py`), so the device memory and the scheduler's KV accounting are the same blocks.

One step's tokens are flattened into one sequence of T tokens (each scheduled sequence's tokens
contiguous). Attention runs in two groups, plain torch ops (no custom kernels):
- decodes (one query token each) together: their keys are gathered into a padded
  `[D, C_max]` slot index with a validity mask, one `scaled_dot_product_attention` call;
- each prefill chunk (a prompt, a piece of one, or a recompute) on its own: its queries are
  contiguous, its keys are its context's slots, the mask is causal with the chunk's offset.
`causal_attention` is the unpaged reference (one contiguous sequence) the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class PrefillChunk:
    """Queries `q_start .. q_start + q_len` of the flattened step, at positions `start_pos ..`; keys at
    `key_slots` (the sequence's first `start_pos + q_len` tokens)."""

    q_start: int
    q_len: int
    start_pos: int
    key_slots: torch.Tensor  # [start_pos + q_len] long


@dataclass
class AttentionBatch:
    """Where one step's tokens go in the cache and what each attends (built by the engine, per step)."""

    slot_mapping: torch.Tensor  # [T] long: the slot each new token's K and V are written to
    decode_q: torch.Tensor | None = None  # [D] long: decode tokens' indices in the flattened step
    decode_slots: torch.Tensor | None = None  # [D, C_max] long: their context's slots (padding: 0)
    decode_valid: torch.Tensor | None = None  # [D, C_max] bool: which of those are real
    prefills: list[PrefillChunk] = field(default_factory=list)


class PagedKVCache:
    """K and V slots of every layer on one device."""

    def __init__(self, layers: int, num_blocks: int, block_size: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:  # fmt: skip
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (layers, num_blocks * block_size, kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        """Device bytes the cache takes."""
        return self.k.numel() * self.k.element_size() * 2

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the new tokens' K and V ([T, kv_heads, head_dim]) in their slots."""
        self.k[layer].index_copy_(0, slots, k)
        self.v[layer].index_copy_(0, slots, v)


def slots_of(block_table: list[int], start: int, stop: int, block_size: int) -> list[int]:
    """Cache slots of tokens `start .. stop - 1` of a sequence with this block table."""
    return [block_table[t // block_size] * block_size + t % block_size for t in range(start, stop)]


def context_slots(tables: list[list[int]], lengths: list[int], block_size: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Cache slots of the first `lengths[i]` tokens of each sequence with block table `tables[i]`,
    padded to the longest: (slots [n, C_max] long, with 0 as padding; valid [n, C_max] bool).
    Built on the device: a long context is thousands of slots per sequence per step."""
    width = max(len(t) for t in tables)
    table = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.long, device=device)
    c_max = max(lengths)
    pos = torch.arange(c_max, device=device)
    slots = table[:, pos // block_size] * block_size + pos % block_size
    valid = pos[None, :] < torch.tensor(lengths, device=device)[:, None]
    return slots.masked_fill(~valid, 0), valid


def paged_attention(q: torch.Tensor, cache: PagedKVCache, layer: int, batch: AttentionBatch) -> torch.Tensor:
    """Attention of the step's queries ([T, heads, head_dim]) over keys and values gathered from the
    cache (written for this layer before the call); returns [T, heads, head_dim]."""
    out = torch.empty_like(q)
    k_all, v_all = cache.k[layer], cache.v[layer]
    if batch.decode_q is not None:
        assert batch.decode_slots is not None and batch.decode_valid is not None
        qd = q[batch.decode_q].unsqueeze(2)  # [D, heads, 1, hd]
        kd = k_all[batch.decode_slots].transpose(1, 2)  # [D, kv_heads, C, hd]
        vd = v_all[batch.decode_slots].transpose(1, 2)
        mask = batch.decode_valid[:, None, None, :]  # [D, 1, 1, C]
        od = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask, enable_gqa=True)
        out[batch.decode_q] = od.squeeze(2)
    for chunk in batch.prefills:
        qs = q[chunk.q_start : chunk.q_start + chunk.q_len].transpose(0, 1)  # [heads, n, hd]
        ks = k_all[chunk.key_slots].transpose(0, 1)  # [kv_heads, C, hd]
        vs = v_all[chunk.key_slots].transpose(0, 1)
        # query i sits at position start_pos + i and sees keys 0 .. start_pos + i
        q_pos = torch.arange(chunk.q_len, device=q.device)[:, None] + chunk.start_pos
        k_pos = torch.arange(ks.shape[1], device=q.device)[None, :]
        os_ = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=k_pos <= q_pos, enable_gqa=True)
        out[chunk.q_start : chunk.q_start + chunk.q_len] = os_.transpose(0, 1)
    return out


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unpaged causal attention of one contiguous sequence: q [n, heads, hd], k and v [n, kv_heads, hd]."""
    o = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True,
                                       enable_gqa=True)  # fmt: skip
    return o.transpose(0, 1)
