"""The body of one OpenAI-compatible streaming request of a given prompt and output length.

Pure code, used inside the Locust worker at each send (a body is a few kilobytes of text, built in
microseconds; shipping pre-built bodies from the parent would cost the schedule's whole size).

**Prompt length.** The prompt of request *i* is `"{i} "` followed by filler words, cut to exactly
`n` characters. capsim's reference LLM server tokenizes one token per UTF-8 byte
(reference_server/llm/tokenizer.py), so there the completions prompt is exactly `n` tokens; for chat
the server wraps the message in its template (`<|user|>\\n…\\n<|assistant|>\\n`, 24 tokens), which
`CHAT_TEMPLATE_TOKENS` takes off the message. A foreign server's tokenizer (BPE) cuts the same text
into fewer tokens (English words run about 4 characters a token), so there the length is
approximate: the server's own count (`usage.prompt_tokens`) is what the run records. The request's
number leads the prompt, so no two prompts share a first block and prefix caching does not shorten
a prefill the schedule meant to be whole.

**Output length.** `max_tokens` = the output count; with `force_length` also `ignore_eos: true` and
`min_tokens` = the count (vLLM's extensions, also accepted by SGLang and capsim's reference server):
the server then generates exactly that many tokens, as trace replays do (Splitwise's Azure trace
README: "force the model to generate the corresponding number of output tokens"). Servers that
reject unknown fields need `--no-force-length`; their outputs may then end early at EOS, and the
counts recorded are the ones the server reports.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Endpoint = Literal["completions", "chat"]
ENDPOINT_PATHS: dict[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
CHAT_TEMPLATE_TOKENS = len("<|user|>\n\n<|assistant|>\n")  # the reference server's template (24)
FILLER = ("the model reads this prompt to measure how long a prefill of known length takes on the server "
          "under test while the load generator keeps sending requests on schedule ")  # fmt: skip


def prompt_text(index: int, n_chars: int) -> str:
    """`n_chars` characters (at least 1): the request's number, a space, then filler words."""
    n_chars = max(int(n_chars), 1)
    head = f"{index} "
    if len(head) >= n_chars:
        return head[:n_chars]
    body_chars = n_chars - len(head)
    repeats = body_chars // len(FILLER) + 1
    return head + (FILLER * repeats)[:body_chars]


def request_body(endpoint: str, model: str, index: int, input_tokens: int, output_tokens: int,
                 force_length: bool = True) -> dict[str, Any]:  # fmt: skip
    """The JSON body asking for a streamed answer of `output_tokens` to a prompt of `input_tokens`
    (module docstring: exact on the reference server, approximate elsewhere)."""
    body: dict[str, Any] = {"model": model}
    if endpoint == "chat":
        content = prompt_text(index, input_tokens - CHAT_TEMPLATE_TOKENS)
        body["messages"] = [{"role": "user", "content": content}]
    else:
        body["prompt"] = prompt_text(index, input_tokens)
    body.update({"max_tokens": int(output_tokens), "temperature": 0.0, "stream": True,
                 "stream_options": {"include_usage": True}})  # fmt: skip
    if force_length:
        body["ignore_eos"] = True
        body["min_tokens"] = int(output_tokens)
    return body


def request_bytes(endpoint: str, model: str, index: int, input_tokens: int, output_tokens: int,
                  force_length: bool = True) -> bytes:  # fmt: skip
    """`request_body` encoded as compact JSON."""
    body = request_body(endpoint, model, index, input_tokens, output_tokens, force_length)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
