"""The reference LLM server (llm-tiny on the CPU) as a real subprocess on a free loopback port, driven
over HTTP as an OpenAI client would: SSE streams parsed chunk by chunk, usage, [DONE], the
vLLM-named metrics, the step log, bad requests. Assertions are on behaviour, never durations."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reference_server.launch import ServerProcess
from reference_server.llm.tokenizer import chat_prompt

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET = 64
BLOCKS = 48


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("llmserver")
    args = ["--model", "llm-tiny", "--device", "cpu", "--max-num-seqs", "8", "--max-num-batched-tokens", str(BUDGET),
            "--block-size", "16", "--num-gpu-blocks", str(BLOCKS), "--max-model-len", "512",
            "--step-log", str(tmp / "steps.jsonl"), "--max-body-bytes", "20000", "--torch-threads", "1"]  # fmt: skip
    with ServerProcess(args, log_dir=tmp) as proc:
        proc.step_log_path = tmp / "steps.jsonl"  # type: ignore[attr-defined]
        yield proc


def stream(url: str, path: str, body: dict[str, Any]) -> list[Any]:
    """POST with stream: true; every SSE `data:` payload in order ("[DONE]" kept as the string)."""
    events: list[Any] = []
    with requests.post(url + path, json={**body, "stream": True}, stream=True, timeout=60) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                continue
            assert line.startswith(b"data: "), line
            payload = line[len(b"data: ") :]
            events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


def test_health_and_models(server: ServerProcess) -> None:
    assert requests.get(server.url + "/health", timeout=5).json() == {"ready": True}
    models = requests.get(server.url + "/v1/models", timeout=5).json()
    assert models["data"][0]["id"] == "llm-tiny" and models["data"][0]["max_model_len"] == 512


def test_completion_stream_has_one_chunk_per_token_then_usage_then_done(server: ServerProcess) -> None:
    """ignore_eos + max_tokens 12: 12 content chunks (the last with finish_reason "length"), then the
    usage chunk with no choices (prompt: 40 ASCII characters = 40 tokens), then [DONE]."""
    body = {"model": "llm-tiny", "prompt": "x" * 40, "max_tokens": 12, "ignore_eos": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    events = stream(server.url, "/v1/completions", body)
    assert events[-1] == "[DONE]"
    *content, usage = events[:-1]
    assert len(content) == 12
    assert all(e["object"] == "text_completion" and len(e["choices"]) == 1 and e["usage"] is None for e in content)
    assert [e["choices"][0]["finish_reason"] for e in content] == [None] * 11 + ["length"]
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 40, "completion_tokens": 12,
                                                         "total_tokens": 52}  # fmt: skip
    assert len({e["id"] for e in events[:-1]}) == 1


def test_chat_stream_starts_with_the_role_and_counts_the_template(server: ServerProcess) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    body = {"messages": messages, "max_completion_tokens": 5, "min_tokens": 5,
            "stream_options": {"include_usage": True}}  # fmt: skip
    events = stream(server.url, "/v1/chat/completions", body)
    content = [e for e in events[:-1] if e["choices"]]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in content) and len(content) == 5
    prompt_tokens = len(chat_prompt([("system", "be brief"), ("user", "hello")]).encode())
    assert events[-2]["usage"]["prompt_tokens"] == prompt_tokens and events[-2]["usage"]["completion_tokens"] == 5


def test_without_include_usage_no_usage_chunk(server: ServerProcess) -> None:
    events = stream(server.url, "/v1/completions", {"prompt": "abc", "max_tokens": 3, "ignore_eos": True})
    assert events[-1] == "[DONE]" and len(events) == 4 and all(e["choices"] for e in events[:-1])


def test_non_streaming_token_ids_and_seeded_sampling(server: ServerProcess) -> None:
    body = {"prompt": list(range(30)), "max_tokens": 8, "ignore_eos": True, "seed": 5, "temperature": 1.0}
    a = requests.post(server.url + "/v1/completions", json=body, timeout=60).json()
    b = requests.post(server.url + "/v1/completions", json=body, timeout=60).json()
    assert a["usage"] == {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
    assert a["choices"][0]["text"] == b["choices"][0]["text"] and a["choices"][0]["finish_reason"] == "length"
    greedy = {**body, "temperature": 0, "seed": None}
    g1 = requests.post(server.url + "/v1/completions", json=greedy, timeout=60).json()
    g2 = requests.post(server.url + "/v1/completions", json=greedy, timeout=60).json()
    assert g1["choices"][0]["text"] == g2["choices"][0]["text"]


def test_concurrent_streams_batch_together_within_the_budget(server: ServerProcess) -> None:
    """Eight streams at once: each gets exactly its max_tokens; the step log shows steps that decode
    several sequences together, never more than the token budget or the KV blocks."""
    before = server_steps(server)
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: stream(server.url, "/v1/completions", {
            "prompt": f"request {i} " * 6, "max_tokens": 10 + i, "ignore_eos": True,
            "stream_options": {"include_usage": True}}), range(8)))  # fmt: skip
    for i, events in enumerate(runs):
        assert events[-2]["usage"]["completion_tokens"] == 10 + i
        assert len([e for e in events[:-1] if e["choices"]]) == 10 + i
    steps = server_steps(server)[len(before) :]
    assert max(s["decode_seqs"] for s in steps) >= 2
    assert all(sum(s["scheduled_tokens"]) == s["prefill_tokens"] + s["decode_seqs"] <= BUDGET for s in steps)
    assert all(s["kv_blocks_used"] <= s["kv_blocks_total"] == BLOCKS for s in steps)
    assert all(s["end_s"] >= s["start_s"] for s in steps)


def server_steps(server: ServerProcess) -> list[dict[str, Any]]:
    path: Path = server.step_log_path  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_step_log_file_and_ring_agree(server: ServerProcess) -> None:
    requests.post(
        server.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2, "ignore_eos": True}, timeout=60
    )
    ring = requests.get(server.url + "/debug/steps?since=0", timeout=5).json()
    assert ring["steps"] == server_steps(server)[: len(ring["steps"])] and ring["last_id"] == len(ring["steps"])
    config = requests.get(server.url + "/debug/config", timeout=5).json()["config"]
    assert config["num_gpu_blocks"] == BLOCKS and config["max_num_batched_tokens"] == BUDGET


def test_metrics_carry_vllms_names(server: ServerProcess) -> None:
    requests.post(
        server.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 3, "ignore_eos": True}, timeout=60
    )
    text = requests.get(server.url + "/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:e2e_request_latency_seconds", "vllm:request_time_per_output_token_seconds",
                 "vllm:request_queue_time_seconds", "vllm:prompt_tokens", "vllm:generation_tokens",
                 "vllm:num_preemptions", "vllm:request_success"):  # fmt: skip
        assert name in families, name
    samples = {(s.name, s.labels.get("finished_reason")): s.value for f in families.values() for s in f.samples}
    assert samples[("vllm:request_success_total", "length")] >= 1
    assert samples[("vllm:generation_tokens_total", None)] >= 3
    assert 'model_name="llm-tiny"' in text and 'engine="0"' in text


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/completions", b'{"max_tokens": 3}', 400, "'prompt' is required"),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": 0}', 400, "'max_tokens' must be an integer >= 1"),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": 600}', 400, "maximum context length is 512"),
        ("/v1/completions", b'{"prompt": "a", "n": 2}', 400, "'n' must be 1"),
        ("/v1/completions", b'{"prompt": "a", "stream_options": {"include_usage": true}}', 400, "stream: true"),
        ("/v1/completions", b'{"prompt": [1, 2, 512]}', 400, "token ids must be integers in [0, 512)"),
        ("/v1/completions", b'{"prompt": "a", "model": "gpt-4"}', 404, "does not exist"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "'messages' must be a non-empty list"),
        ("/v1/completions", b'{"prompt": "' + b"a" * 20000 + b'"}', 413, "exceeds 20000 bytes"),
    ],
)
def test_bad_requests_get_openai_style_errors(server: ServerProcess, path: str, body: bytes, status: int,
                                              fragment: str) -> None:  # fmt: skip
    resp = requests.post(server.url + path, data=body, headers={"content-type": "application/json"}, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert fragment in error["message"] and error["code"] == status


def test_a_client_that_disconnects_frees_its_sequence(server: ServerProcess) -> None:
    """A stream dropped after its first chunk is aborted: nothing stays running, its blocks come back."""
    body = {"prompt": "y" * 20, "max_tokens": 400, "ignore_eos": True, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60) as resp:
        next(resp.iter_lines())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = requests.get(server.url + "/metrics", timeout=5).text
        if 'vllm:num_requests_running{engine="0",model_name="llm-tiny"} 0.0' in text and "abort" in text:
            break
        time.sleep(0.2)
    assert 'vllm:kv_cache_usage_perc{engine="0",model_name="llm-tiny"} 0.0' in text
    assert 'finished_reason="abort"' in text
