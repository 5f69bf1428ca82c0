"""The LLM server's OpenAI request validation and response shapes, and its block pool's order rules,
without a server."""

from __future__ import annotations

import orjson
import pytest

from reference_server.llm.block_pool import BlockPool, SeqBlocks
from reference_server.llm.openai_protocol import ApiError, chunk_bytes, parse_request, usage_chunk_bytes
from reference_server.llm.tokenizer import EOS_ID, chat_prompt, decode_token, encode


def parse(body: dict[str, object], chat: bool = False) -> object:
    return parse_request(orjson.dumps(body), chat, "llm-tiny", vocab=512, max_model_len=100)


def test_defaults_follow_openai_and_vllm() -> None:
    """Completions: max_tokens 16, temperature 1; chat: max_tokens = max_model_len - prompt."""
    p = parse({"prompt": "hello"})
    assert (p.prompt, p.max_tokens, p.temperature, p.stream, p.include_usage) == (
        encode("hello"),
        16,
        1.0,
        False,
        False,
    )
    c = parse({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, chat=True)
    assert c.prompt == encode(chat_prompt([("user", "hi")])) and c.max_tokens == 100 - len(c.prompt)
    assert (
        parse({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7}, chat=True).max_tokens == 7
    )
    assert parse({"prompt": [[5, 6, 7]], "stream": True, "stream_options": {"include_usage": True}}).prompt == [5, 6, 7]
    # what clients send by default and asks for nothing is accepted
    neutral = {"logprobs": False, "echo": False, "stop": [], "tools": [], "best_of": None, "top_p": 1.0, "user": "u"}
    assert parse({"prompt": "a", **neutral}).prompt == [97]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a", "max_tokens": True}, "max_tokens"),
        ({"prompt": "a", "min_tokens": 20, "max_tokens": 10}, "min_tokens"),
        ({"prompt": "a", "temperature": -1}, "temperature"),
        ({"prompt": "a", "temperature": "hot"}, "temperature"),
        ({"prompt": "a", "seed": 1.5}, "seed"),
        ({"prompt": "a", "stream": "yes"}, "stream"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
        ({"prompt": "a", "stop": ["\n"]}, "stop"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, -1]}, "prompt"),
    ],
)
def test_refusals_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse(body)
    assert exc.value.status == 400 and exc.value.param == param
    error = orjson.loads(exc.value.body())["error"]
    assert error["code"] == 400 and error["type"] == "BadRequestError" and error["message"]


def test_sse_chunks_are_vllms_shape() -> None:
    raw = chunk_bytes("r1", True, 5, "llm-tiny", "", None, role=True)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    event = orjson.loads(raw[6:])
    assert event["object"] == "chat.completion.chunk" and event["choices"][0]["delta"] == {"role": "assistant",
                                                                                         "content": ""}  # fmt: skip
    usage = orjson.loads(usage_chunk_bytes("r1", False, 5, "llm-tiny", 3, 4)[6:])
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_tokenizer_round_trips_ascii_and_names_other_ids() -> None:
    assert "".join(decode_token(t) for t in encode("Hi there!")) == "Hi there!"
    assert decode_token(EOS_ID) == "" and decode_token(257) == " a" and decode_token(257 + 27) == " bb"


def test_free_order_unhashed_first_hashed_last_and_the_first_keeps_a_hash() -> None:
    """Blocks of 2. A (5 tokens) fills blocks 0, 1 (hashed) and part of 2; C, with the same contents at
    once in blocks 3-5, finds the hashes taken and keeps its blocks unhashed. Freeing C then A, tail
    first, each unhashed block goes to the front as it is freed (5, 4, 3, then 2 in front of them) and
    A's hashed ones to the back (1, then 0). B with A's contents then takes 2 hits."""
    pool = BlockPool(6, 2, prefix_caching=True)
    tokens = [1, 2, 3, 4, 5]
    a = SeqBlocks()
    assert pool.allocate(a, tokens, 0, 5)
    assert a.table == [0, 1, 2] and pool.block_hash[0] is not None and pool.block_hash[2] is None
    c = SeqBlocks()
    assert pool.allocate(c, tokens, 0, 5) and c.table == [3, 4, 5]
    assert all(pool.block_hash[b] is None for b in c.table)  # A was first
    pool.free_seq(c)
    pool.free_seq(a)
    assert list(pool.free_queue) == [2, 3, 4, 5, 1, 0]
    b = SeqBlocks()
    hits = pool.match_prefix(b, tokens)
    assert hits == [0, 1]
    assert pool.allocate(b, tokens, 4, 1, hits) and b.table == [0, 1, 2] and pool.used == 3
