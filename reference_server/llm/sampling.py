"""How the reference LLM server picks each output token from the model's logits.

- `temperature` 0: greedy (argmax). Above 0: a draw from softmax(logits / temperature), from the
  request's own `torch.Generator` when it gives a `seed` (the same request, the same tokens), else
  from the server's generator (seeded by `--seed`: a run of the server is reproducible as a whole).
- EOS is masked out while fewer than `min_tokens` have been generated (vLLM's min_tokens), and
  always under `ignore_eos` (vLLM only ignores it when stopping; with random weights masking it
  guarantees the requested length either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference_server.llm.tokenizer import EOS_ID


@dataclass
class SamplingParams:
    """A request's sampling and stopping settings (OpenAI / vLLM names)."""

    max_tokens: int
    temperature: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False
    min_tokens: int = 0
    generator: torch.Generator | None = None  # the request's own, when it gives a seed


def sample(logits: torch.Tensor, params: list[SamplingParams], generated: list[int],
           server_generator: torch.Generator) -> list[int]:  # fmt: skip
    """One token per row of `logits` [n, vocab]; `generated[i]` = tokens row i has produced so far.
    Rows without a seed draw together on the logits' device from `server_generator` (which must live
    there); rows with one draw on the CPU from their own generator."""
    logits = logits.to(torch.float32, copy=True)  # masked in place below: never the caller's tensor
    for i, p in enumerate(params):
        if p.ignore_eos or generated[i] < p.min_tokens:
            logits[i, EOS_ID] = -torch.inf
    out = logits.argmax(dim=-1).tolist()
    hot = [i for i, p in enumerate(params) if p.temperature > 0]
    if not hot:
        return out
    temps = torch.tensor([[params[i].temperature] for i in hot], device=logits.device)
    probs = torch.softmax(logits[hot] / temps, dim=-1)
    shared = [row for row, i in enumerate(hot) if params[i].generator is None]
    if shared:
        drawn = torch.multinomial(probs[shared], 1, generator=server_generator).squeeze(1).tolist()
        for row, token in zip(shared, drawn, strict=True):
            out[hot[row]] = token
    for row, i in enumerate(hot):
        gen = params[i].generator
        if gen is not None:
            out[i] = int(torch.multinomial(probs[row].cpu(), 1, generator=gen).item())
    return out
