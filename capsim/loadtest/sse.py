"""Reading one streamed OpenAI-compatible response (Server-Sent Events) and timing its tokens.

Pure code (no sockets, no gevent): the Locust worker feeds it the response body as it arrives, with
the clock reading at each arrival, and reads the per-request figures at the end. Tested like any
pure function (tests/loadtest/test_loadtest_sse.py).

Framing (https://html.spec.whatwg.org/multipage/server-sent-events.html, as vLLM, SGLang and TGI
send it): events are separated by a blank line; an event's `data:` lines are joined with newlines;
lines starting with `:` are comments (keep-alive pings) and are skipped; `data: [DONE]` ends the
stream. Each data event is one JSON chunk:

- completions: `choices[0].text`; chat: `choices[0].delta.content` (the first chat chunk may carry
  only `delta.role`, with `content` "" or absent; reasoning models put text in
  `delta.reasoning_content` or `delta.reasoning`, which counts as content here);
- with `stream_options.include_usage` one chunk with `choices: []` (or null) and `usage`
  `{prompt_tokens, completion_tokens}` precedes `[DONE]`;
- an error mid-stream is a chunk `{"error": {...}}` (vLLM's shape) or `{"object": "error", ...}`.

Per request (the definitions of vLLM's `bench serve`, `benchmarks/lib/endpoint_request_func.py`,
where they agree with AIPerf; the differences are noted in docs/loadtest.md "LLM endpoints"):

- **first token**: the first chunk whose choice carries non-empty text (AIPerf's "first content
  response"; vLLM's benchmark takes the first chunk with a `choices` entry, which for vLLM's chat
  role-only chunk is the same engine step);
- **token gaps** (`itl_ms`): between consecutive content chunks: per chunk, not per token (a server
  that bundles tokens into one chunk shows one gap for them);
- **end** (E2E): the last data chunk, usage chunk included (not `[DONE]`), as vLLM's benchmark;
- **output tokens**: `usage.completion_tokens` when the server reports it, else the content chunks
  counted; **input tokens**: `usage.prompt_tokens`, else unknown (the caller keeps the count it
  asked for).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

DONE_MARK = "[DONE]"
MAX_EVENT_BYTES = 1 << 20  # an event this long without a blank line is not SSE


class StreamError(Exception):
    """The body is not an SSE stream of OpenAI chunks."""


@dataclass
class StreamResult:
    """What one streamed response told about its request (times in the caller's clock, seconds)."""

    first_token_s: float | None = None
    last_event_s: float | None = None
    content_times_s: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None  # from usage
    completion_tokens: int | None = None  # from usage
    finish_reason: str | None = None
    done: bool = False  # `[DONE]` seen
    error: str | None = None  # an error chunk's message, or why the stream could not be read
    events: int = 0  # data events, [DONE] excluded

    @property
    def chunks(self) -> int:
        """Chunks that carried text."""
        return len(self.content_times_s)

    @property
    def output_tokens(self) -> int:
        """Generated tokens: the server's usage count when given, else the content chunks."""
        return self.completion_tokens if self.completion_tokens is not None else self.chunks

    def itl_ms(self) -> list[float]:
        """Gaps between consecutive content chunks, in ms."""
        t = self.content_times_s
        return [(b - a) * 1000.0 for a, b in itertools.pairwise(t)]


def _choice_text(choice: Any) -> str:
    """The text a choice carries: completions `text`, chat `delta.content` (or reasoning text)."""
    if not isinstance(choice, dict):
        return ""
    text = choice.get("text")
    if isinstance(text, str) and text:
        return text
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for key in ("content", "reasoning_content", "reasoning"):
            value = delta.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def _error_message(chunk: dict[str, Any]) -> str | None:
    error = chunk.get("error")
    if error is not None:
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        return str(error)[:300]
    if chunk.get("object") == "error":
        return str(chunk.get("message") or chunk)[:300]
    return None


class SseParser:
    """Incremental reader of one response body: `feed(data, now_s)` as bytes arrive, `close(now_s)`
    when the body ends; `result` holds the figures."""

    def __init__(self) -> None:
        self.result = StreamResult()
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, data: bytes, now_s: float) -> None:
        """Consume body bytes that arrived at `now_s` (events split across reads are joined)."""
        if self.result.done or self.result.error is not None:
            return  # after [DONE] or an error nothing more is read
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_EVENT_BYTES:
                    self._fail("an SSE line longer than 1 MiB: not an event stream")
                return
            line = self._buffer[:end].rstrip(b"\r")
            self._buffer = self._buffer[end + 1 :]
            self._line(line, now_s)
            if self.result.done or self.result.error is not None:
                return

    def close(self, now_s: float) -> StreamResult:
        """The body ended: dispatch a last event not followed by a blank line; a stream that ended
        without `[DONE]` (and without an error) is recorded as truncated."""
        if self._buffer and not self.result.done and self.result.error is None:
            self._line(self._buffer.rstrip(b"\r"), now_s)
            self._buffer = b""
        if self._data and not self.result.done and self.result.error is None:
            self._dispatch(now_s)
        if not self.result.done and self.result.error is None:
            self._fail("truncated stream: the response ended without data: [DONE]")
        return self.result

    def _fail(self, message: str) -> None:
        self.result.error = message

    def _line(self, line: bytes, now_s: float) -> None:
        if not line:
            if self._data:
                self._dispatch(now_s)
            return
        if line.startswith(b":"):
            return  # a comment (keep-alive ping)
        name, _, value = line.partition(b":")
        if name != b"data":
            return  # event:, id:, retry: carry nothing the figures need
        self._data.append(value[1:].decode("utf-8", "replace") if value.startswith(b" ")
                          else value.decode("utf-8", "replace"))  # fmt: skip

    def _dispatch(self, now_s: float) -> None:
        text = "\n".join(self._data)
        self._data = []
        if text.strip() == DONE_MARK:
            self.result.done = True
            return
        try:
            chunk = json.loads(text)
        except ValueError:
            self._fail(f"an SSE event is not JSON: {text[:80]!r}")
            return
        if not isinstance(chunk, dict):
            self._fail(f"an SSE event is not a JSON object: {text[:80]!r}")
            return
        r = self.result
        r.events += 1
        r.last_event_s = now_s
        message = _error_message(chunk)
        if message is not None:
            self._fail(f"error mid-stream: {message}")
            return
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices:
            choice = choices[0]
            if _choice_text(choice):
                if r.first_token_s is None:
                    r.first_token_s = now_s
                r.content_times_s.append(now_s)
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                r.finish_reason = reason
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int) and not isinstance(prompt, bool):
                r.prompt_tokens = prompt
            if isinstance(completion, int) and not isinstance(completion, bool):
                r.completion_tokens = completion
