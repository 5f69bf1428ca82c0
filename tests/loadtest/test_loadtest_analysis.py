"""The step summary from request rows: outcomes, corrected vs uncorrected latency, send lag and
validity, windows and the stability rule; and the records recorder that produces the rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from capsim.loadtest.analysis import summarize_step
from capsim.loadtest.records import REQUEST_SCHEMA, RequestRecorder, outcome
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
                                  "scheduled": None, "not_recorded": None}


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


def test_small_lag_against_slow_responses_is_a_warning_not_invalid() -> None:
    s = summarize(steady_recorder(lag_s=0.004, latency_ms=100.0))
    assert s["valid"]
    assert s["send_lag_ms"]["late_share"] == 1.0 and s["send_lag_ms"]["limit_ms"] == pytest.approx(10.0, rel=0.01)
    assert "median latency" in s["warnings"][0]


def test_server_times_from_headers() -> None:
    from capsim.loadtest.records import server_times

    headers = {"x-queue-ms": "1.5", "x-compute-ms": "bad", "x-batch-size": "4.0"}
    assert server_times(headers.get) == (1.5, None, 4)
    assert server_times({}.get) == (None, None, None)
