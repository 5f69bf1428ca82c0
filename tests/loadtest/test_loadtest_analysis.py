"""The step summary from request rows: outcomes, corrected vs uncorrected latency, send lag and
validity, windows and the stability rule; and the records recorder that produces the rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from capsim.loadtest.analysis import judge_lateness, lateness_remedy, percentile_bounds_ms, summarize_step
from capsim.loadtest.records import INFERENCE, REQUEST_SCHEMA, RequestRecorder, outcome, request_kind
from capsim.loadtest.windows import stability, window_stats

T0 = 1_700_000_000.0


def table_from(recorder: RequestRecorder) -> pa.Table:
    return pa.Table.from_pydict(recorder.drain_rows(), schema=REQUEST_SCHEMA)


def steady_recorder(n: int = 1000, rate: float = 100.0, lag_s: float = 0.0, latency_ms: float = 5.0) -> RequestRecorder:
    rec = RequestRecorder()
    rec.configure(T0, warmup_s=1.0, worker=0)
    for i in range(n):
        intended = T0 + i / rate
        rec.record(intended, intended + lag_s, latency_ms, 200, 10, None, "predict")
    return rec


def summarize(rec: RequestRecorder, **kw: object) -> dict:
    table = table_from(rec)
    statuses = [{"final": True, "histograms": rec.histograms(), "cap_hits": 0}]
    args = dict(start_s=T0, warmup_s=1.0, duration_s=10.0, window_s=1.0, offered_rps=100.0,
                scheduled=np.arange(1000) / 100.0, mode="open", partial=False)
    args.update(kw)
    return summarize_step(table, statuses, **args)  # type: ignore[arg-type]


def test_outcomes() -> None:
    assert outcome(200, None) == "completed"
    assert outcome(429, "HTTPError") == "rejected"
    assert outcome(504, "HTTPError") == "timed_out"
    assert outcome(0, "TimeoutError: timed out") == "timed_out"
    assert outcome(0, "ConnectionRefusedError: refused") == "error"
    assert outcome(500, "HTTPError") == "error"
    assert outcome(0, "interrupted") == "interrupted"


def test_recorder_charges_send_lag_to_the_corrected_latency_and_skips_warmup() -> None:
    rec = RequestRecorder()
    rec.record(T0 + 2.0, T0 + 2.5, 10.0, 200, 5, None, "x")  # before configure: kept pending
    rec.record(T0 + 0.5, T0 + 0.5, 1.0, 200, 5, None, "x")  # inside the warm-up
    early = rec.drain_rows()  # drained before t0 is known: measured once it is
    assert rec.corrected.count == 0
    rec.configure(T0, warmup_s=1.0, worker=3)
    rows = rec.drain_rows()
    assert rows["worker"] == [] and early["worker"] == [0, 0]
    rows = early
    assert rows["latency_corrected_ms"] == [pytest.approx(510.0), 1.0]
    assert rec.corrected.count == 1 and rec.corrected.percentile_ms(50) == pytest.approx(510.0, rel=1e-3)
    assert rec.uncorrected.percentile_ms(50) == pytest.approx(10.0, rel=1e-3)
    assert rec.buffered == 0


def test_steady_run_is_valid_and_stable() -> None:
    s = summarize(steady_recorder())
    assert s["valid"] and s["windows"]["stable"]
    assert s["requests"]["arrived"] == s["requests"]["completed"] == s["requests"]["scheduled"] == 900
    assert s["throughput_rps"] == pytest.approx(100.0, rel=0.01)
    assert s["latency_ms"]["p99"] == pytest.approx(5.0, rel=0.01)
    assert s["histogram_source"] == "workers"


def test_late_generator_makes_the_run_invalid() -> None:
    s = summarize(steady_recorder(lag_s=0.004))
    assert not s["valid"]
    assert "generator lag" in s["invalid_reasons"][0]
    assert s["send_lag_ms"]["late_share"] == 1.0
    assert s["latency_ms"]["p50"] == pytest.approx(9.0, rel=0.01)
    assert s["latency_uncorrected_ms"]["p50"] == pytest.approx(5.0, rel=0.01)


def test_partial_run_rebuilds_histograms_from_rows() -> None:
    rec = steady_recorder(n=500)
    s = summarize(rec, partial=True)
    assert s["partial"] and s["histogram_source"] == "rows"
    assert s["requests"]["arrived"] == s["requests"]["scheduled"]


def test_rejections_and_errors_are_counted_apart() -> None:
    rec = RequestRecorder()
    rec.configure(T0, 0.0)
    for i, status in enumerate([200, 429, 504, 500, 200]):
        rec.record(T0 + i * 0.1, T0 + i * 0.1, 1.0, status, 0, None if status == 200 else "HTTPError", "x")
    s = summarize(rec, warmup_s=0.0, duration_s=1.0, scheduled=None)
    assert s["requests"] | {} == {"arrived": 5, "completed": 2, "rejected": 1, "timed_out": 1, "errors": 1,
                                  "interrupted": 0, "scheduled": None, "not_recorded": None}


def test_stability_needs_three_agreeing_windows() -> None:
    def windows(rates: list[float], p99s: list[float]) -> list[dict]:
        return [{"index": i, "completed": 1, "throughput_rps": r, "p99_ms": p} for i, (r, p) in
                enumerate(zip(rates, p99s, strict=True))]

    assert stability(windows([100, 101, 99], [10, 10.5, 10.9]))["stable"]
    assert not stability(windows([100, 101], [10, 10]))["stable"]
    assert not stability(windows([100, 120, 99], [10, 10, 10]))["stable"]
    assert not stability(windows([100, 100, 100], [10, 12, 10]))["stable"]
    got = stability(windows([50, 100, 100, 100], [1, 10, 10, 10]))
    assert got["stable_windows"] == [1, 2, 3]


def test_window_stats_counts_completions_when_they_happen() -> None:
    intended = np.array([0.1, 0.2, 0.9, 1.5])
    done = intended + np.array([0.05, 0.05, 0.5, 0.05])
    ok = np.array([True, True, True, False])
    out = window_stats(intended, done, np.array([50.0, 50.0, 500.0, 50.0]), ok, 0.0, 2.0, 1.0)
    assert [w["arrived"] for w in out] == [3, 1]
    assert [w["completed"] for w in out] == [2, 1]
    assert out[1]["p99_ms"] is None


def test_a_constant_lag_small_against_the_latency_is_valid() -> None:
    """Every send 4 ms late against 100 ms responses: the p99 moves by under 4% and the spacing of the
    sends (what the server sees) does not change at all."""
    s = summarize(steady_recorder(lag_s=0.004, latency_ms=100.0))
    assert s["valid"], s["invalid_reasons"]
    assert s["send_lag_ms"]["late_share"] == 1.0  # perf_analyzer would call every send late
    assert s["lateness"]["latency_shift_share"] == pytest.approx(4.0 / 104.0, rel=0.01)
    assert s["lateness"]["displaced_share"] == 0.0


# ---------------------------------------------------------------- the lateness rule, on synthetic lags

RNG = np.random.default_rng(7)
GAP_MS = 25.0  # 40 req/s


def latencies(n: int, seed: int = 3) -> np.ndarray:
    """A fast model's latencies: median 1.5 ms, a lognormal tail (p99 about 4.8 ms)."""
    return np.random.default_rng(seed).lognormal(np.log(1.5), 0.5, n)


def test_judge_lateness_accepts_rare_small_lateness_on_a_shared_machine() -> None:
    """The 2-core case of issue 13: 1.4% of sends 1-2 ms late at 40 req/s. The old rule (1% of sends
    more than max(1 ms, 10% of the median latency) late) called every such run invalid."""
    n = 2000
    lag = np.where(RNG.random(n) < 0.014, RNG.uniform(1.0, 2.0, n), RNG.uniform(0.0, 0.05, n))
    unc = latencies(n)
    verdict = judge_lateness(lag, unc + lag, unc, mean_gap_ms=GAP_MS)
    assert verdict["valid"] and not verdict["reasons"]
    assert verdict["displaced_share"] == 0.0  # no send 2.5 ms later than the typical one
    assert verdict["latency_shift_share"] < 0.10


def _late_below_the_tail(unc: np.ndarray, lag_ms: float) -> np.ndarray:
    """`lag_ms` on the 2% of requests just below the p99 (lateness that hits the tail: a machine
    stall delays the send and slows the server alike)."""
    n = unc.size
    lag = np.zeros(n)
    lag[np.argsort(unc)[int(0.97 * n):int(0.99 * n)]] = lag_ms
    return lag


def test_judge_lateness_rejects_a_shifted_percentile_beyond_its_sampling_noise() -> None:
    unc = latencies(80_000)
    lag = _late_below_the_tail(unc, 1.0)
    verdict = judge_lateness(lag, unc + lag, unc, mean_gap_ms=GAP_MS)
    assert not verdict["valid"] and len(verdict["reasons"]) == 1
    assert verdict["latency_shift_share"] > 0.10
    assert verdict["latency_ms"] > verdict["uncorrected_upper_ms"]
    assert "p99 latency by" in verdict["reasons"][0] and "confidence interval" in verdict["reasons"][0]


def test_judge_lateness_forgives_a_shift_inside_the_p99s_own_uncertainty() -> None:
    """The same lateness in a 20 s run (800 requests): the p99 is the 8th largest request, its 95%
    interval spans the 14th to the 3rd, and the shift stays inside it: nothing the run can tell
    has changed, so the run stays valid although the shift is over 10%."""
    unc = latencies(800)
    lag = _late_below_the_tail(unc, 1.0)
    verdict = judge_lateness(lag, unc + lag, unc, mean_gap_ms=GAP_MS)
    assert verdict["latency_shift_share"] > 0.10
    assert verdict["valid"], verdict["reasons"]


def test_percentile_bounds_are_order_statistics() -> None:
    values = np.arange(1.0, 801.0)  # 1..800
    value, lo, hi = percentile_bounds_ms(values, 99.0)
    assert value == np.percentile(values, 99.0, method="inverted_cdf") == 792.0
    assert (lo, hi) == (786.0, 798.0)  # 792 -+ 1.96 * sqrt(800 * 0.01 * 0.99) = 5.5 ranks
    assert percentile_bounds_ms(np.array([3.0]), 99.0) == (3.0, 3.0, 3.0)


def test_judge_lateness_rejects_jitter_that_reshapes_the_arrivals() -> None:
    """3% of sends 5 ms late (twice the 2.5 ms tolerance at 40 req/s): they are displaced in the
    arrival process, although the p99 latency barely moves (50 ms responses)."""
    lag = np.where(RNG.random(5000) < 0.03, 5.0, 0.0)
    unc = 50.0 * latencies(5000) / 1.5
    verdict = judge_lateness(lag, unc + lag, unc, mean_gap_ms=GAP_MS)
    assert not verdict["valid"] and len(verdict["reasons"]) == 1
    assert verdict["displaced_share"] == pytest.approx(0.03, rel=0.2)
    assert "arrival process" in verdict["reasons"][0]
    # the same jitter at 4 req/s (250 ms gaps, 25 ms tolerance) leaves the arrivals as drawn
    assert judge_lateness(lag, unc + lag, unc, mean_gap_ms=250.0)["valid"]


def test_judge_lateness_ignores_a_lag_common_to_every_send_and_copes_with_no_latency() -> None:
    none = np.array([])
    verdict = judge_lateness(np.full(100, 30.0), none, none, mean_gap_ms=GAP_MS)
    assert verdict["valid"] and verdict["latency_shift_ms"] is None
    # the same 30 ms common lag with 2% of sends 3 ms later still: those are displaced
    lag = np.full(1000, 30.0) + np.where(np.arange(1000) % 50 == 0, 3.0, 0.0)
    assert judge_lateness(lag, none, none, GAP_MS)["displaced_share"] == pytest.approx(0.02)
    assert judge_lateness(none, none, none, GAP_MS)["valid"]


def test_lateness_remedy_names_the_cause() -> None:
    assert "load average 6.3 on 2 CPUs" in lateness_remedy(3.0, 1, 6.3, 2)
    assert "--workers 4" in lateness_remedy(95.0, 2, 0.5, 8)
    assert "another machine" in lateness_remedy(10.0, 1, 0.5, 8)


# ---------------------------------------------------------------- kinds, names, interrupted requests


def test_request_kind() -> None:
    assert request_kind("/v2/models/mlp/infer", None) == INFERENCE
    assert request_kind("x", "http://h:8000/v2/models/m/versions/3/infer") == INFERENCE
    assert request_kind("team-predict", "http://h/predict/mlp") == INFERENCE
    assert request_kind("/v2/health/ready", "http://h/v2/health/ready") == "other"
    assert request_kind("/v2/models/mlp", None) == "other"  # metadata, not inference
    assert request_kind("score", "http://h/v1/score", inference_names=("score",)) == INFERENCE
    assert request_kind("score", None) == "other"


def test_headline_figures_are_inference_only_and_every_name_has_its_own() -> None:
    """A custom locustfile's health checks (fast) beside inference (slow): the headline latency is
    the inference requests' alone, and `by_name` reports both."""
    rec = RequestRecorder()
    rec.configure(T0, warmup_s=0.0, worker=0)
    for i in range(200):
        t = T0 + i * 0.01
        rec.record(t, t, 20.0, 200, 10, None, "predict", kind=INFERENCE)
        rec.record(t, t, 0.5, 200, 2, None, "/v2/health/ready", kind="other")
    s = summarize(rec, warmup_s=0.0, duration_s=2.0, scheduled=None, mode="custom")
    assert s["requests"]["arrived"] == 200
    assert s["latency_ms"]["p50"] == pytest.approx(20.0, rel=0.01)
    assert set(s["by_name"]) == {"predict", "/v2/health/ready"}
    health = s["by_name"]["/v2/health/ready"]
    assert health["kind"] == "other" and health["completed"] == 200
    assert health["latency_ms"]["p50"] == pytest.approx(0.5, rel=0.01)
    assert s["lateness"] is None  # no schedule, nothing to judge


def test_interrupted_requests_are_counted_never_averaged() -> None:
    rec = steady_recorder(n=500)
    rec.record_interrupted(T0 + 5.001, T0 + 5.0015, "predict")
    table = table_from(rec)
    row = table.slice(table.num_rows - 1).to_pylist()[0]
    assert row["error"] == "interrupted" and row["latency_ms"] is None and row["sent_s"] == T0 + 5.0015
    statuses = [{"final": True, "histograms": rec.histograms(), "cap_hits": 0}]
    s = summarize_step(table, statuses, start_s=T0, warmup_s=1.0, duration_s=10.0, window_s=1.0,
                       offered_rps=100.0, scheduled=None, mode="open", partial=True)
    assert s["requests"]["interrupted"] == 1 and s["requests"]["errors"] == 0
    assert s["latency_ms"]["max"] == pytest.approx(5.0, rel=0.01)


def test_server_times_from_headers() -> None:
    from capsim.loadtest.records import server_times

    headers = {"x-queue-ms": "1.5", "x-compute-ms": "bad", "x-batch-size": "4.0"}
    assert server_times(headers.get) == (1.5, None, 4)
    assert server_times({}.get) == (None, None, None)
