"""The OpenAI stream parser (capsim/loadtest/sse.py): framing, the chunk shapes vLLM sends, and the
times it derives from the clock readings it is fed (hand-written streams, exact expectations)."""

from __future__ import annotations

import json

import pytest

from capsim.loadtest.sse import SseParser, StreamResult


def event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def completion(text: str, finish: str | None = None) -> bytes:
    return event({"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": text,
                                                                      "finish_reason": finish}], "usage": None})


def chat(delta: dict[str, str], finish: str | None = None) -> bytes:
    return event({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                             "finish_reason": finish}]})


USAGE = event({"id": "c", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}})
DONE = b"data: [DONE]\n\n"


def run(pieces: list[tuple[bytes, float]], end_s: float = 99.0) -> StreamResult:
    parser = SseParser()
    for data, now in pieces:
        parser.feed(data, now)
    return parser.close(end_s)


def test_completion_stream_times_and_usage() -> None:
    r = run([(completion("a"), 1.0), (completion("b"), 1.25), (completion("c", "length"), 1.75), (USAGE, 1.8),
             (DONE, 1.9)])
    assert r.error is None and r.done
    assert r.first_token_s == 1.0 and r.last_event_s == 1.8  # E2E ends at the usage chunk, not [DONE]
    assert r.itl_ms() == pytest.approx([250.0, 500.0])
    assert (r.prompt_tokens, r.completion_tokens, r.output_tokens, r.chunks) == (12, 3, 3, 3)
    assert r.finish_reason == "length"


def test_events_split_across_reads_byte_by_byte() -> None:
    stream = completion("x") + completion("y") + USAGE + DONE
    parser = SseParser()
    for i in range(len(stream)):  # each byte its own read, at its own time
        parser.feed(stream[i : i + 1], float(i))
    r = parser.close(1e6)
    first_end = len(completion("x")) - 1  # the blank line completing the first event
    assert r.first_token_s == float(first_end)
    assert r.chunks == 2 and r.completion_tokens == 3 and r.done


def test_chat_role_only_first_chunk_and_empty_content_do_not_count() -> None:
    r = run([(chat({"role": "assistant", "content": ""}), 0.5), (chat({"content": "Hi"}), 0.7),
             (chat({"content": ""}), 0.8), (chat({"content": " there"}, "stop"), 0.9), (DONE, 1.0)])
    assert r.first_token_s == 0.7  # the role-only chunk carries no text
    assert r.chunks == 2 and r.itl_ms() == pytest.approx([200.0])
    assert r.completion_tokens is None and r.output_tokens == 2  # no usage: the content chunks counted
    assert r.last_event_s == 0.9


def test_reasoning_text_counts_as_content() -> None:
    r = run([(chat({"reasoning_content": "hmm"}), 0.2), (chat({"content": "ok"}), 0.3), (DONE, 0.4)])
    assert r.first_token_s == 0.2 and r.chunks == 2


def test_error_mid_stream_stops_reading() -> None:
    err = event({"error": {"message": "engine died", "type": "ServerError", "code": 500}})
    r = run([(completion("a"), 1.0), (err, 1.1), (completion("b"), 1.2), (DONE, 1.3)])
    assert r.error == "error mid-stream: engine died"
    assert r.chunks == 1 and not r.done


def test_truncated_stream_is_an_error() -> None:
    r = run([(completion("a"), 1.0), (completion("b"), 1.1)])
    assert r.error is not None and r.error.startswith("truncated stream")
    assert r.chunks == 2  # what arrived is kept


def test_comments_crlf_multiline_data_and_other_fields() -> None:
    payload = json.dumps({"choices": [{"text": "z"}]})
    head, tail = payload[:10], payload[10:]
    stream = (b": ping\r\n\r\nevent: message\r\nid: 7\r\ndata: " + head.encode() + b"\r\ndata:" + tail.encode()
              + b"\r\n\r\ndata: [DONE]\r\n\r\n")
    r = run([(stream, 2.0)])
    # Two data lines join with a newline, which JSON reads as whitespace.
    assert r.error is None and r.chunks == 1 and r.done


def test_last_event_without_blank_line_is_dispatched_at_close() -> None:
    r = run([(completion("a") + b"data: [DONE]", 1.0)])
    assert r.done and r.error is None


def test_non_json_event_and_null_choices() -> None:
    assert run([(b"data: {oops\n\n", 1.0)]).error.startswith("an SSE event is not JSON")  # type: ignore[union-attr]
    r = run([(event({"choices": None, "usage": {"prompt_tokens": 4, "completion_tokens": 1}}), 1.0), (DONE, 1.1)])
    assert r.error is None and r.chunks == 0 and r.output_tokens == 1 and r.prompt_tokens == 4


def test_continuous_usage_keeps_the_last_count() -> None:
    one = event({"choices": [{"text": "a"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    two = event({"choices": [{"text": "b"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    r = run([(one, 1.0), (two, 1.1), (DONE, 1.2)])
    assert r.completion_tokens == 2 and r.output_tokens == 2
