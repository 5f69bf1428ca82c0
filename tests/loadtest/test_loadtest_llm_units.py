"""The pure parts of `capsim loadtest --protocol openai`: request bodies of a given length, token
counts per arrival (the simulator's draws), the LLM summary from hand-made rows, and flag errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from capsim.cli.main import main
from capsim.errors import CapsimInputError
from capsim.loadtest.analysis import summarize_step
from capsim.loadtest.openai_request import CHAT_TEMPLATE_TOKENS, prompt_text, request_body
from capsim.loadtest.records import REQUEST_SCHEMA, RequestRecorder
from capsim.loadtest.runner import draw_request_tokens
from capsim.loadtest.settings import LoadTestSettings, build_arrival, parse_tokens, validate_settings
from capsim.rng import RandomStreams
from capsim.workload.tokens import LognormalTokens, TokensSpec, sample_token_counts
from reference_server.llm.tokenizer import chat_prompt, encode


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 512, 5000])
def test_prompts_have_the_asked_length_on_the_reference_tokenizer(n: int) -> None:
    assert len(encode(prompt_text(12, n))) == n
    body = request_body("chat", "m", 12, n + CHAT_TEMPLATE_TOKENS, 5)
    content = body["messages"][0]["content"]
    assert len(encode(chat_prompt([("user", content)]))) == n + CHAT_TEMPLATE_TOKENS


def test_prompts_of_different_requests_differ_from_the_first_token() -> None:
    # Distinct first blocks: prefix caching cannot shorten a prefill the schedule meant to be whole.
    assert prompt_text(1, 100)[:2] != prompt_text(2, 100)[:2]
    assert prompt_text(10, 100) != prompt_text(1, 100)


def test_request_body_fields() -> None:
    body = request_body("completions", "llm-tiny", 0, 32, 9)
    assert body["max_tokens"] == 9 and body["min_tokens"] == 9 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "llm-tiny" and len(body["prompt"]) == 32
    loose = request_body("chat", "x", 0, 32, 9, force_length=False)
    assert "ignore_eos" not in loose and "min_tokens" not in loose and loose["max_tokens"] == 9


def test_token_counts_are_the_simulators_draws(tmp_path: Path) -> None:
    spec = TokensSpec(input=LognormalTokens(mean=300, cv=0.8, max=2000), output=parse_tokens("64", "--o", 1))
    arrival = build_arrival("poisson", 5.0, 10.0)
    settings = LoadTestSettings(target="http://x:1", protocol="openai", arrival=arrival, tokens=spec, seed=7)
    drawn = draw_request_tokens(settings, arrival, 200)
    inputs, _ = sample_token_counts(spec, 200, RandomStreams(7))
    assert drawn.shape == (200, 2) and np.array_equal(drawn[:, 0], inputs) and np.all(drawn[:, 1] == 64)
    assert len(set(drawn[:, 0].tolist())) > 50  # really drawn, not one value


def test_trace_token_counts_follow_the_replayed_rows(tmp_path: Path) -> None:
    trace = tmp_path / "azure.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,100,7\n0.5,200,8\n0.2,300,9\n")
    arrival = build_arrival("trace", None, 10.0, trace=str(trace))
    spec = TokensSpec(input=parse_tokens("trace", "--i", 1), output=parse_tokens("trace", "--o", 1))
    settings = LoadTestSettings(target="http://x:1", protocol="openai", arrival=arrival, tokens=spec)
    # Rows are replayed in timestamp order: 0.0, 0.2, 0.5.
    assert draw_request_tokens(settings, arrival, 3).tolist() == [[100, 7], [300, 9], [200, 8]]
    poisson = LoadTestSettings(target="http://x:1", protocol="openai", arrival=build_arrival("poisson", 1.0, 5.0),
                               tokens=spec)
    with pytest.raises(CapsimInputError, match="--input-tokens"):
        validate_settings(poisson)


def _table() -> pa.Table:
    rec = RequestRecorder()
    name = "/v1/completions"
    # A: on time; first token at 40 ms, 4 tokens, gaps of 20 ms: TPOT (100 - 40) / 3 = 20 ms.
    rec.record(10.0, 10.0, 100.0, 200, 1, None, name, llm={
        "requested_input_tokens": 12, "requested_output_tokens": 4, "ttft_ms": 40.0, "itl_ms": [20.0, 20.0, 20.0],
        "input_tokens": 12, "output_tokens": 4, "chunks": 4, "usage_reported": True})
    # B: sent 5 ms late; first (and only) token 30 ms after the send, so 35 ms after the intended send.
    rec.record(11.0, 11.005, 60.0, 200, 1, None, name, llm={
        "requested_input_tokens": 7, "requested_output_tokens": 1, "ttft_ms": 30.0, "itl_ms": [],
        "input_tokens": 7, "output_tokens": 1, "chunks": 1, "usage_reported": True})
    rec.record(12.0, 12.0, 5.0, 500, 1, "HTTP 500", name, llm={"requested_input_tokens": 3,
                                                               "requested_output_tokens": 3})
    rec.record_interrupted(13.0, 13.0, name, llm={"requested_input_tokens": 3, "requested_output_tokens": 3,
                                                  "ttft_ms": 9.0, "itl_ms": [1.0]})
    # In the warm-up: left out of every figure.
    rec.record(9.1, 9.1, 1.0, 200, 1, None, name, llm={
        "requested_input_tokens": 1, "requested_output_tokens": 2, "ttft_ms": 0.5, "itl_ms": [0.5],
        "input_tokens": 1, "output_tokens": 2, "chunks": 2, "usage_reported": False})
    return pa.Table.from_pydict(rec.drain_rows(), schema=REQUEST_SCHEMA)


def test_llm_summary_from_rows_by_hand() -> None:
    s = summarize_step(_table(), [], start_s=9.0, warmup_s=0.5, duration_s=10.0, window_s=5.0, offered_rps=1.0,
                       scheduled=None, mode="open", partial=False, slo_ttft_ms=36.0, slo_tpot_ms=25.0)
    assert s["requests"]["completed"] == 2 and s["requests"]["errors"] == 1 and s["requests"]["interrupted"] == 1
    assert s["ttft_ms"]["p50"] == pytest.approx(37.5) and s["ttft_ms"]["max"] == pytest.approx(35.0 + 5.0)
    assert s["ttft_ms"]["mean"] == pytest.approx((40.0 + 35.0) / 2)
    assert s["tpot_ms"]["mean"] == pytest.approx(20.0) and s["tpot_ms"]["max"] == pytest.approx(20.0)
    assert s["itl_ms"]["mean"] == pytest.approx(20.0) and s["itl_ms"]["max"] == pytest.approx(20.0, rel=1e-6)
    assert s["queue_wait_ms"]["p50"] is None
    span_s = 9.5
    assert s["tokens"]["input_per_s"] == pytest.approx(19 / span_s)
    assert s["tokens"]["output_per_s"] == pytest.approx(5 / span_s)
    assert s["tokens"]["chunks_per_token"] == pytest.approx(1.0)
    # SLO TTFT <= 36 ms, TPOT <= 25 ms: A misses (TTFT 40), B meets (TPOT of a one-token answer is 0).
    # Finished = A, B and the HTTP 500 (the interrupted request is left out).
    assert s["slo"]["goodput_rps"] == pytest.approx(1 / span_s)
    assert s["slo"]["attainment"] == pytest.approx(1 / 3)
    assert s["warnings"] == ["1 measured requests failed (1 x HTTP 500); their rows' error column says why"]


def test_llm_summary_without_objectives_has_no_goodput() -> None:
    s = summarize_step(_table(), [], start_s=9.0, warmup_s=0.5, duration_s=10.0, window_s=5.0, offered_rps=1.0,
                       scheduled=None, mode="open", partial=False)
    assert s["slo"]["goodput_rps"] is None and s["slo"]["attainment"] is None


def test_plain_rows_have_no_llm_keys() -> None:
    rec = RequestRecorder()
    rec.record(10.0, 10.0, 3.0, 200, 1, None, "/predict/m")
    s = summarize_step(pa.Table.from_pydict(rec.drain_rows(), schema=REQUEST_SCHEMA), [], start_s=9.0,
                       warmup_s=0.5, duration_s=10.0, window_s=5.0, offered_rps=1.0, scheduled=None, mode="open",
                       partial=False)
    assert "ttft_ms" not in s and "tokens" not in s


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--input-tokens", "512"], "--input-tokens"),  # without --protocol openai
        (["--slo-ttft-ms", "100"], "--slo-ttft-ms"),
        (["--tokens-from", "s.yaml"], "--tokens-from"),
        (["--protocol", "openai", "--tokens-from", "missing.yaml"], "--tokens-from"),
        (["--protocol", "openai", "--input-tokens", "lots"], "--input-tokens"),
        (["--protocol", "openai", "--output-tokens", "lognormal:100"], "--output-tokens"),
        (["--protocol", "openai", "--output-tokens", "0"], "--output-tokens"),
        (["--protocol", "openai", "--slo-tpot-ms", "-1"], "--slo-tpot-ms"),
        (["--protocol", "openai", "--endpoint", "embeddings"], "--endpoint"),
        (["--protocol", "openai", "--closed-loop"], "--protocol"),
        (["--protocol", "openai", "--input-tokens", "trace"], "--input-tokens"),
    ],
)
def test_bad_llm_flags_are_one_line_exit_2(flags: list[str], flag: str, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code = main(["loadtest", "--target", "http://127.0.0.1:9", "--model", "m", "--rate", "1", "--out",
                 str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and flag in err[0], err


SCENARIO = """name: llm-tokens
duration_s: 60
workload:
  arrival: {kind: constant, rate_rps: 0.5}
  tokens:
    input: {kind: lognormal, mean: 400, cv: 0.5, max: 2000}
    output: {kind: fixed, value: 33}
model: {name: llama-3.1-8b}
hardware: {name: H100-SXM}
service: {kind: llm_linear, base_ms: 5.0, per_prefill_token_ms: 0.1, per_decode_seq_ms: 0.1}
serving:
  mode: llm
  replicas: 1
  scheduler: {max_num_seqs: 16, max_num_batched_tokens: 2048, chunked_prefill: false, block_size: 16,
              kv_cache_blocks: 4096}
"""


def test_tokens_from_a_scenario(tmp_path: Path) -> None:
    from capsim.cli.loadtest import _scenario_tokens
    from capsim.scenario.load import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    tokens = _scenario_tokens(path, flags_given=False)
    assert tokens == load_scenario(path).workload.tokens  # type: ignore[union-attr]
    assert tokens.output.value == 33 and tokens.input.mean == 400  # type: ignore[union-attr]
    with pytest.raises(CapsimInputError, match="--tokens-from"):
        _scenario_tokens(path, flags_given=True)
    plain = tmp_path / "plain.yaml"
    plain.write_text(SCENARIO.split("  tokens:")[0] + "model:" + SCENARIO.split("model:")[1])
    with pytest.raises(CapsimInputError):
        _scenario_tokens(plain, flags_given=False)


def test_sweep_curve_of_llm_steps_has_ttft_and_tpot(tmp_path: Path) -> None:
    from capsim.loadtest.runner import LoadTestRun

    def step(number: int, rate: float) -> dict:
        s = summarize_step(_table(), [], start_s=9.0, warmup_s=0.5, duration_s=10.0, window_s=5.0, offered_rps=rate,
                           scheduled=None, mode="open", partial=False, slo_ttft_ms=36.0)
        return {"step": number, "rate_rps": rate, **s}

    settings = LoadTestSettings(target="http://x:1", protocol="openai", arrival=build_arrival("poisson", 1.0, 10.0),
                                sweep=[1.0, 2.0])
    summary = LoadTestRun(settings, tmp_path)._summary([step(0, 1.0), step(1, 2.0)], False, None)
    point = summary["curve"][0]
    assert point["ttft_p50_ms"] == pytest.approx(37.5) and point["tpot_p50_ms"] == pytest.approx(20.0)
    assert point["output_tokens_per_s"] == pytest.approx(5 / 9.5) and point["goodput_rps"] == pytest.approx(1 / 9.5)
