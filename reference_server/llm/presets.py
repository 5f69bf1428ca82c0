"""Named shapes of the reference LLM (a Llama-shaped decoder, `model.py`), and their parameter counts.

Imports nothing heavy: the server's flag parsing and `capsim serve` read the names from here.

| preset | shape | parameters | meant for |
|---|---|---|---|
| `llm-tiny` | 4 layers, hidden 256, 8 heads / 2 KV heads of 32, FFN 688, vocab 512 | 3.0M | tests on a CPU |
| `llm-small` | 8 layers, hidden 512, 8 heads / 4 KV heads of 64, FFN 1408, vocab 4096 | 27.8M | CPU studies |
| `llm-1b` | Llama-3.2-1B's: 16 layers, hidden 2048, 32/8 KV heads of 64, FFN 8192, vocab 128256, tied | 1.24B | GPU |

Llama-3.2-1B's shape is its `config.json` (https://huggingface.co/meta-llama/Llama-3.2-1B,
config.json: hidden_size 2048, intermediate_size 8192, num_hidden_layers 16, num_attention_heads 32,
num_key_value_heads 8, head_dim 64, vocab_size 128256, tie_word_embeddings true, rope_theta 500000);
the card gives 1.24B parameters, which `parameter_count` reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlmShape:
    """The shape of a Llama-style decoder (sizes in elements, lengths in tokens)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_position: int
    tied_embeddings: bool = False
    rope_theta: float = 500_000.0  # Llama 3's rotary base
    norm_eps: float = 1e-5

    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads × head_dim)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the key (and of the value) projection (KV heads × head_dim)."""
        return self.kv_heads * self.head_dim

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """KV-cache bytes one token holds: K and V, every layer (docs: 2 × L × kv_heads × head_dim × bytes)."""
        return 2 * self.layers * self.kv_dim * dtype_bytes


PRESETS: dict[str, LlmShape] = {
    s.name: s
    for s in (
        LlmShape("llm-tiny", layers=4, hidden=256, heads=8, kv_heads=2, head_dim=32, ffn=688, vocab=512,
                 max_position=2048),
        LlmShape("llm-small", layers=8, hidden=512, heads=8, kv_heads=4, head_dim=64, ffn=1408, vocab=4096,
                 max_position=4096),
        LlmShape("llm-1b", layers=16, hidden=2048, heads=32, kv_heads=8, head_dim=64, ffn=8192, vocab=128256,
                 max_position=131072, tied_embeddings=True),
    )
}  # fmt: skip
LLM_MODEL_NAMES = tuple(PRESETS)


def parameter_count(shape: LlmShape) -> int:
    """Parameters of the decoder, counted from its shape: the embedding; per layer the Q, K, V and
    O projections (no biases), the gate, up and down projections of SwiGLU and two RMSNorm weights;
    the final norm; the LM head unless it is tied to the embedding."""
    per_layer = (
        shape.hidden * shape.q_dim  # q
        + 2 * shape.hidden * shape.kv_dim  # k, v
        + shape.q_dim * shape.hidden  # o
        + 3 * shape.hidden * shape.ffn  # gate, up, down
        + 2 * shape.hidden  # the two norms
    )
    embedding = shape.vocab * shape.hidden
    head = 0 if shape.tied_embeddings else shape.vocab * shape.hidden
    return embedding + shape.layers * per_layer + shape.hidden + head
