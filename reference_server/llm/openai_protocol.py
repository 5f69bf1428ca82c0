"""The OpenAI-compatible request and response bodies of the reference LLM server
(https://platform.openai.com/docs/api-reference/completions, /chat; vLLM's extensions
`ignore_eos` and `min_tokens` from `vllm/entrypoints/openai/protocol.py`).

- `parse_request` validates a `/v1/completions` or `/v1/chat/completions` body into a
  `ParsedRequest`, or raises `ApiError` (400 with an OpenAI-style error object). Fields it does not
  use are ignored, as vLLM ignores them; fields it cannot honour (`n` > 1, `logprobs`, `echo`,
  `stop`, `best_of`) are refused rather than silently dropped.
- The prompt is text (tokenized by `tokenizer.py`: one token per UTF-8 byte), a list of token ids,
  or a one-element list of either. Chat messages' `content` is text or a list of text parts.
- `max_tokens` defaults to 16 for completions (OpenAI's and vLLM's default) and to
  max_model_len − prompt for chat (vLLM); `max_completion_tokens` is the chat name for it.
- `chunk_bytes`, `usage_chunk_bytes`, `full_response`: SSE chunks (`data: {...}\\n\\n`) and bodies
  shaped as vLLM sends them (one chunk per token; usage in a last chunk with `choices: []` when
  `stream_options.include_usage`; `data: [DONE]` at the end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from reference_server.llm.tokenizer import chat_prompt, encode

DONE = b"data: [DONE]\n\n"
# Refused when given a value that asks for something (not null, false, 0, "" or []).
UNSUPPORTED = ("logprobs", "top_logprobs", "echo", "stop", "best_of", "suffix", "tools")


class ApiError(Exception):
    """A request the server refuses: HTTP status and an OpenAI-style error object."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> bytes:
        """`{"error": {"message", "type", "param", "code"}}` (vLLM's ErrorResponse)."""
        kind = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError"}.get(self.status, "ServerError")
        return orjson.dumps({"error": {"message": self.message, "type": kind, "param": self.param,
                                       "code": self.status}})  # fmt: skip


@dataclass
class ParsedRequest:
    """What the engine needs from a request body."""

    chat: bool
    prompt: list[int]
    max_tokens: int
    min_tokens: int
    temperature: float
    seed: int | None
    ignore_eos: bool
    stream: bool
    include_usage: bool


def _int(body: dict[str, Any], name: str, default: int | None, minimum: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError(400, f"'{name}' must be an integer >= {minimum}, got {value!r}", name)
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false, got {value!r}", name)
    return value


def _token_ids(values: list[Any], vocab: int) -> list[int]:
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in values):
        raise ApiError(400, f"'prompt': token ids must be integers in [0, {vocab})", "prompt")
    return list(values)


def _completion_prompt(prompt: Any, vocab: int) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return encode(prompt)
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return _token_ids(prompt, vocab)
    raise ApiError(400, "'prompt' must be a string, a list of token ids, or a list of one of either", "prompt")


def _chat_prompt(messages: Any) -> list[int]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    pairs = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"'messages[{i}]' must be an object with a string 'role'", "messages")
        content = m.get("content", "")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):  # fmt: skip
                raise ApiError(400, f"'messages[{i}].content': only text parts are supported", "messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ApiError(400, f"'messages[{i}].content' must be a string or a list of text parts", "messages")
        pairs.append((m["role"], content))
    return encode(chat_prompt(pairs))


def parse_request(raw: bytes, chat: bool, served_model: str, vocab: int, max_model_len: int) -> ParsedRequest:
    """Validate a request body (see the module docstring)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise ApiError(404, f"The model `{model}` does not exist.", "model")
    for name in UNSUPPORTED:
        if body.get(name):
            raise ApiError(400, f"'{name}' is not supported by this server", name)
    if _int(body, "n", 1, 1) != 1:
        raise ApiError(400, "'n' must be 1 on this server", "n")
    if chat:
        prompt = _chat_prompt(body.get("messages"))
    elif "prompt" not in body:
        raise ApiError(400, "'prompt' is required", "prompt")
    else:
        prompt = _completion_prompt(body["prompt"], vocab)
    if not prompt:
        raise ApiError(400, "the prompt is empty", "prompt")
    name = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    default = max(1, max_model_len - len(prompt)) if chat else 16
    max_tokens = _int(body, name, default, 1)
    assert max_tokens is not None
    min_tokens = _int(body, "min_tokens", 0, 0) or 0
    if min_tokens > max_tokens:
        raise ApiError(400, f"'min_tokens' ({min_tokens}) must be <= {name} ({max_tokens})", "min_tokens")
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature < math.inf:
        raise ApiError(400, f"'temperature' must be a number >= 0, got {temperature!r}", "temperature")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"'seed' must be an integer, got {seed!r}", "seed")
    stream = _bool(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise ApiError(400, "'stream_options' can only be given with stream: true", "stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    include_usage = _bool(options or {}, "include_usage", False)
    return ParsedRequest(chat, prompt, max_tokens, min_tokens, float(temperature), seed,
                         _bool(body, "ignore_eos", False), stream, include_usage)  # fmt: skip


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def _head(request_id: str, chat: bool, created: int, model: str) -> dict[str, Any]:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": request_id, "object": kind, "created": created, "model": model}


def chunk_bytes(request_id: str, chat: bool, created: int, model: str, text: str, finish_reason: str | None,
                role: bool = False) -> bytes:  # fmt: skip
    """One SSE event with one choice: completion `text`, or chat `delta` (with the role in the first)."""
    if chat:
        delta: dict[str, str] = {"role": "assistant", "content": text} if role else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}
    return b"data: " + orjson.dumps({**_head(request_id, chat, created, model), "choices": [choice],
                                     "usage": None}) + b"\n\n"  # fmt: skip


def usage_chunk_bytes(request_id: str, chat: bool, created: int, model: str, prompt_tokens: int,
                      completion_tokens: int) -> bytes:  # fmt: skip
    """The last SSE event before [DONE] under include_usage: no choices, the token counts."""
    body = {**_head(request_id, chat, created, model), "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def error_chunk_bytes(message: str) -> bytes:
    """An SSE event saying the stream failed (vLLM sends `data: {"error": ...}` before [DONE])."""
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "ServerError", "code": 500}}) + b"\n\n"


def full_response(request_id: str, chat: bool, created: int, model: str, text: str, finish_reason: str,
                  prompt_tokens: int, completion_tokens: int) -> bytes:  # fmt: skip
    """The non-streaming body."""
    if chat:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                                  "finish_reason": finish_reason}  # fmt: skip
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}
        kind = "text_completion"
    return orjson.dumps({"id": request_id, "object": kind, "created": created, "model": model, "choices": [choice],
                         "usage": _usage(prompt_tokens, completion_tokens)})  # fmt: skip
