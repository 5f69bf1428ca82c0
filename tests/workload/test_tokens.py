"""Token counts (capsim.workload.tokens) and multi-turn sessions (capsim.workload.sessions): exact
sampling, the redraw rule for `max`, files and trace columns, seeds and common random numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim.errors import CapsimInputError
from capsim.rng import RandomStreams
from capsim.workload.renewal import PoissonArrival
from capsim.workload.sessions import SessionSpec, conversation_prompts, sample_sessions
from capsim.workload.tokens import LognormalTokens, TokensSpec, sample_token_counts
from capsim.workload.trace import TraceArrival
from tests.scenario_helpers import make_scenario


def spec(input_: dict[str, object], output: dict[str, object] | None = None) -> TokensSpec:
    return TokensSpec.model_validate({"input": input_, "output": output or {"kind": "fixed", "value": 1}})


def draw(tokens: TokensSpec, n: int, seed: int = 3, trace: TraceArrival | None = None) -> tuple[np.ndarray, ...]:
    return sample_token_counts(tokens, n, RandomStreams(seed), arrival=trace)


def test_fixed_counts() -> None:
    inputs, outputs = draw(spec({"kind": "fixed", "value": 512}, {"kind": "fixed", "value": 128}), 5)
    assert inputs.tolist() == [512] * 5 and outputs.tolist() == [128] * 5
    assert inputs.dtype == np.int64


def test_lognormal_mean_and_cv() -> None:
    inputs, _ = draw(spec({"kind": "lognormal", "mean": 1000, "cv": 1.0}), 400_000)
    # rounding to integers moves the mean by < 0.01%; the standard error of the mean is cv/sqrt(n) = 0.16%
    assert inputs.mean() == pytest.approx(1000, rel=0.01)
    assert inputs.std() / inputs.mean() == pytest.approx(1.0, rel=0.03)
    assert inputs.min() >= 1


def test_max_redraws_rather_than_clips() -> None:
    dist = {"kind": "lognormal", "mean": 200, "cv": 1.5, "max": 400}
    tokens = spec(dist)
    inputs, _ = draw(tokens, 400_000)
    assert inputs.max() <= 400
    law = LognormalTokens.model_validate(dist)
    # Clipping would put every draw above 400 (about 8% of them) at 400; redrawing leaves the
    # conditional law, whose mass at 400 is that of [399.5, 400.5) over the acceptance.
    at_max = (law._cdf(400.5) - law._cdf(399.5)) / law.acceptance()
    assert np.mean(inputs == 400) == pytest.approx(at_max, abs=5 * math.sqrt(at_max / inputs.size))
    assert 1 - law._cdf(400.5) > 0.05  # the tail clipping would have piled up
    assert inputs.mean() == pytest.approx(law.expected_mean(), rel=0.01)
    assert law.expected_mean() < 200


def test_small_means_are_whole_counts_of_at_least_one() -> None:
    dist = {"kind": "lognormal", "mean": 2.0, "cv": 1.0}
    inputs, _ = draw(spec(dist), 200_000)
    law = LognormalTokens.model_validate(dist)
    assert inputs.min() == 1
    p_one = (law._cdf(1.5) - law._cdf(0.5)) / law.acceptance()
    assert np.mean(inputs == 1) == pytest.approx(p_one, abs=0.005)


def test_a_max_that_keeps_almost_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="under 1%: raise max or lower mean"):
        LognormalTokens(mean=100_000, cv=0.1, max=10)
    LognormalTokens(mean=100, cv=0.5, max=60)  # keeps ~17%: accepted


def test_empirical_draws_from_a_csv_or_parquet_column(tmp_path: Path) -> None:
    csv = tmp_path / "lengths.csv"
    csv.write_text("prompt,other\n10,x\n20,y\n30,z\n")
    inputs, _ = draw(spec({"kind": "empirical", "file": str(csv), "column": "prompt"}), 30_000)
    assert set(inputs.tolist()) == {10, 20, 30}
    assert np.bincount(inputs)[[10, 20, 30]] / inputs.size == pytest.approx([1 / 3] * 3, abs=0.015)
    parquet = tmp_path / "lengths.parquet"
    pq.write_table(pa.table({"prompt": [7, 7, 9]}), parquet)
    inputs, _ = draw(spec({"kind": "empirical", "file": str(parquet), "column": "prompt"}), 1000)
    assert set(inputs.tolist()) == {7, 9}


@pytest.mark.parametrize(("body", "message"), [("prompt\n10\n0\n", "row 3: column 'prompt' must hold whole token"),
                                               ("prompt\n1.5\n", "row 2: column 'prompt' must hold whole token"),
                                               ("prompt\nabc\n", "holds values that are not numbers"),
                                               ("other\n3\n", "no column 'prompt'")])  # fmt: skip
def test_empirical_files_with_bad_counts_are_refused_in_one_line(tmp_path: Path, body: str, message: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    with pytest.raises(CapsimInputError, match=message) as err:
        draw(spec({"kind": "empirical", "file": str(csv), "column": "prompt"}), 10)
    assert str(csv) in str(err.value) and "\n" not in str(err.value)


def trace_file(tmp_path: Path) -> Path:
    # rows out of time order: the replay sorts them, and the token columns follow
    path = tmp_path / "trace.csv"
    path.write_text("t,ContextTokens,GeneratedTokens,Prompt\n2,300,30,3\n0,100,10,1\n1,200,20,2\n3,400,40,4\n")
    return path


def test_trace_columns_follow_the_replay_order(tmp_path: Path) -> None:
    arrival = TraceArrival(path=str(trace_file(tmp_path)), time_column="t")
    tokens = spec({"kind": "trace"}, {"kind": "trace"})
    inputs, outputs = draw(tokens, 4, trace=arrival)
    assert inputs.tolist() == [100, 200, 300, 400] and outputs.tolist() == [10, 20, 30, 40]
    named, _ = draw(spec({"kind": "trace", "column": "Prompt"}), 4, trace=arrival)
    assert named.tolist() == [1, 2, 3, 4]
    skipped = TraceArrival(path=str(trace_file(tmp_path)), time_column="t", skip_s=1.5, loop=True)
    assert len(skipped.offsets_s()) == 2
    inputs, _ = draw(tokens, 5, trace=skipped)
    assert inputs.tolist() == [300, 400, 300, 400, 300]  # the rows after skip_s, looping with the replay
    with pytest.raises(CapsimInputError, match="the replay ends first"):
        draw(tokens, 5, trace=arrival)
    with pytest.raises(CapsimInputError, match=r"needs workload\.arrival kind: trace"):
        draw(tokens, 5)
    poisson = PoissonArrival(rate_rps=1.0)
    with pytest.raises(CapsimInputError, match=r"needs workload\.arrival kind: trace"):
        sample_token_counts(tokens, 5, RandomStreams(1), arrival=poisson)
    fixed = spec({"kind": "fixed", "value": 9})
    assert sample_token_counts(fixed, 2, RandomStreams(1), arrival=poisson)[0].tolist() == [9, 9]


def test_the_bundled_azure_conversation_trace_has_the_published_means() -> None:
    arrival = TraceArrival(path=str(Path(__file__).parents[2] / "scenarios/data/azure-llm-2023-conv.csv"))
    inputs, outputs = draw(spec({"kind": "trace"}, {"kind": "trace"}), 19_366, trace=arrival)
    # Splitwise's conversation trace: context mean 1,155, generated mean 211 (facts, computed)
    assert inputs.mean() == pytest.approx(1155, abs=1) and outputs.mean() == pytest.approx(211, abs=1)


LOGNORMAL_IN = {"kind": "lognormal", "mean": 800, "cv": 1.2, "max": 8000}


def test_same_seed_same_counts_and_another_seed_other_counts() -> None:
    tokens = spec(LOGNORMAL_IN, {"kind": "lognormal", "mean": 100, "cv": 1.0})
    first, second, other = draw(tokens, 1000, 7), draw(tokens, 1000, 7), draw(tokens, 1000, 8)
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
    assert not (first[0] == other[0]).all()


def test_changing_the_output_spec_leaves_the_input_counts_alone() -> None:
    a_in, a_out = draw(spec(LOGNORMAL_IN, {"kind": "lognormal", "mean": 100, "cv": 1.0}), 2000)
    b_in, b_out = draw(spec(LOGNORMAL_IN, {"kind": "lognormal", "mean": 300, "cv": 0.5, "max": 400}), 2000)
    assert (a_in == b_in).all()
    assert not (a_out == b_out).all()


def test_fewer_requests_get_the_first_counts_of_more() -> None:
    tokens = spec(LOGNORMAL_IN, {"kind": "lognormal", "mean": 100, "cv": 1.0, "max": 150})
    many, few = draw(tokens, 5000), draw(tokens, 37)
    assert (many[0][:37] == few[0]).all() and (many[1][:37] == few[1]).all()


def test_conversation_prompts_carry_the_conversation_so_far() -> None:
    first_turn = np.array([0, 3, 4])  # a 3-turn session, then a 1-turn one
    new_input = np.array([100, 20, 5, 50])
    output = np.array([10, 30, 7, 9])
    # turn 2 of session 0: 100 + 10 + 20 + 30 + 5 = 165; session 1 starts afresh
    assert conversation_prompts(first_turn, new_input, output).tolist() == [100, 130, 165, 50]


def test_sessions_sample_turns_think_times_and_prompts() -> None:
    session = SessionSpec.model_validate({"turns": {"kind": "fixed", "value": 3},
                                          "think_time_s": {"kind": "fixed", "value_s": 2.5}})  # fmt: skip
    tokens = spec({"kind": "fixed", "value": 100}, {"kind": "fixed", "value": 10})
    draws = sample_sessions(session, tokens, 2, RandomStreams(1))
    assert draws.turns.tolist() == [3, 3]
    assert draws.think_s.tolist() == [0.0, 2.5, 2.5, 0.0, 2.5, 2.5]
    assert draws.prompt_tokens.tolist() == [100, 210, 320, 100, 210, 320]
    varied = SessionSpec.model_validate({"turns": {"kind": "lognormal", "mean": 4, "cv": 0.5, "max": 10}})
    draws = sample_sessions(varied, tokens, 2000, RandomStreams(1))
    assert draws.turns.min() >= 1 and draws.turns.max() <= 10
    assert draws.first_turn[-1] == draws.new_input_tokens.size == draws.turns.sum()
    with pytest.raises(CapsimInputError, match="single requests, not conversations"):
        sample_sessions(session, spec({"kind": "trace"}), 2, RandomStreams(1))


def test_the_scenario_checks_token_and_session_sections() -> None:
    arrival = {"kind": "poisson", "rate_rps": 1.0}
    with pytest.raises(CapsimInputError, match="needs arrival kind: trace"):
        make_scenario(workload={"arrival": arrival, "tokens": {"input": {"kind": "trace"},
                                                               "output": {"kind": "fixed", "value": 4}}})  # fmt: skip
    with pytest.raises(CapsimInputError, match="add tokens"):
        make_scenario(workload={"arrival": arrival, "session": {"turns": {"kind": "fixed", "value": 2}}})
    with pytest.raises(CapsimInputError, match=r"workload\.tokens\.input\.max"):
        make_scenario(workload={"arrival": arrival, "tokens": {"input": {"kind": "lognormal", "mean": 5, "cv": 1,
                                                                         "max": 0},
                                                               "output": {"kind": "fixed", "value": 4}}})  # fmt: skip


@given(mean=st.floats(1.0, 5000.0), cv=st.floats(0.05, 4.0), cap=st.integers(1, 20_000), seed=st.integers(0, 99))
@settings(max_examples=60, deadline=None)
def test_lognormal_counts_are_whole_and_within_bounds(mean: float, cv: float, cap: int, seed: int) -> None:
    """Property: whatever the spec a validation accepts, every count is a whole number in [1, max]."""
    try:
        law = LognormalTokens(mean=mean, cv=cv, max=cap)
    except ValueError:
        return  # a max keeping under 1% of the draws is refused, as documented
    inputs, _ = draw(TokensSpec(input=law, output=law), 500, seed)
    assert inputs.dtype == np.int64 and inputs.min() >= 1 and inputs.max() <= cap


@pytest.mark.parametrize("duration", [{"kind": "fixed", "value_s": 2.0}, {"kind": "uniform", "low_s": 1, "high_s": 3},
                                      {"kind": "lognormal", "mean_s": 5.0, "cv": 1.5}])  # fmt: skip
def test_think_times_drawn_at_once_equal_one_at_a_time(duration: dict[str, object]) -> None:
    """Sessions draw all think times in one call: the same values as one call per turn."""
    spec = SessionSpec.model_validate({"turns": {"kind": "fixed", "value": 2}, "think_time_s": duration})
    rng = np.random.default_rng(7)
    scalars = [spec.think_time_s.sample_s(rng) for _ in range(500)]
    assert spec.think_time_s.sample_array_s(np.random.default_rng(7), 500).tolist() == scalars


def test_llm_sections_are_refused_by_the_other_modes() -> None:
    tokens = {"input": {"kind": "fixed", "value": 4}, "output": {"kind": "fixed", "value": 4}}
    with pytest.raises(CapsimInputError, match=r"serving\.mode realtime does not read them"):
        make_scenario(workload={"arrival": {"kind": "poisson", "rate_rps": 1.0}, "tokens": tokens})
    with pytest.raises(CapsimInputError, match=r"only serving\.mode llm serves a model"):
        make_scenario(model={"name": "llama-3.1-8b"})
