"""The LLM figures of one load-test step (`--protocol openai`): the keys `capsim simulate --json`
gives LLM runs (capsim/serving/llm/summary.py) — `ttft_ms`, `tpot_ms`, `itl_ms`, `queue_wait_ms`,
`tokens` and the `slo` block with TTFT/TPOT objectives — from the request rows.

Definitions (vLLM `bench serve`, `benchmarks/serve.py calculate_metrics`; docs/loadtest.md "LLM
endpoints" notes where GuideLLM and AIPerf differ), over the *measured* requests that completed
(intended send in the measured interval, HTTP 2xx, stream read to `[DONE]`):

- TTFT = first content chunk − **intended** send (coordinated-omission corrected, like `latency_ms`:
  the row's `ttft_ms` is from the actual send, plus the send lag);
- TPOT = (E2E − TTFT) / (output tokens − 1), for requests with more than one output token (the
  send lag cancels: both ends are the same request's);
- ITL = every gap between consecutive content chunks, pooled over requests (per chunk: a server
  that bundles tokens shows fewer, longer gaps; TPOT is per token);
- E2E is the step's `latency_ms` (last data chunk − intended send);
- tokens per second = Σ input (output) tokens / measured seconds, with the counts the server
  reported in `usage`, else the prompt length asked for and the content chunks counted;
- goodput = completed measured requests whose TTFT ≤ `--slo-ttft-ms` and TPOT ≤ `--slo-tpot-ms`
  (those given; a one-token answer has no TPOT and meets it, as vLLM counts its TPOT as 0), per
  measured second; attainment = that count over the measured requests that finished (completed,
  rejected, timed out or failed; interrupted ones are left out);
- `queue_wait_ms`: not visible to a client (null), kept for the simulator's key set; the server's
  own `vllm:request_queue_time_seconds` is in telemetry.parquet when it is scraped.

Percentiles are numpy's (linear interpolation), as the simulator's exact tallies
(`capsim.metrics.tally.ExactValues`) compute them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from capsim.metrics.summary import clean_json
from capsim.metrics.tally import ExactValues, empty_summary


def _distribution(values: np.ndarray) -> dict[str, float]:
    dist = ExactValues()
    finite = values[np.isfinite(values)]
    if finite.size:
        dist.add(finite)
    return dist.summary() if finite.size else empty_summary()


def is_llm_table(table: pa.Table) -> bool:
    """Whether the rows are streamed LLM requests (the load test ran `--protocol openai`)."""
    return "requested_output_tokens" in table.column_names and table.column("requested_output_tokens").null_count \
        < table.num_rows  # fmt: skip


def llm_step_figures(table: pa.Table, measured: np.ndarray, completed: np.ndarray, finished: np.ndarray,
                     span_s: float, slo_ttft_ms: float | None, slo_tpot_ms: float | None) -> dict[str, Any]:
    """`ttft_ms`, `tpot_ms`, `itl_ms`, `queue_wait_ms`, `tokens`, `slo` of one step (module docstring).

    `measured`: rows whose intended send is in the measured interval (inference requests);
    `completed`: rows that completed; `finished`: rows that completed, were refused or failed."""
    def column(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    good = measured & completed
    lag_ms = np.maximum(column("sent_s") - column("intended_s"), 0.0) * 1000.0
    ttft_ms = column("ttft_ms") + lag_ms  # NaN where no first token came
    e2e_ms = column("latency_corrected_ms")
    output = column("output_tokens")
    inputs = column("input_tokens")
    many = good & (output > 1)
    tpot_ms = np.full(table.num_rows, np.nan)
    tpot_ms[many] = (e2e_ms[many] - ttft_ms[many]) / (output[many] - 1)
    itl_lists = table.column("itl_ms").filter(pa.array(good)).combine_chunks()
    itl_ms = np.asarray(itl_lists.flatten().to_numpy(zero_copy_only=False), dtype=np.float64) \
        if len(itl_lists) else np.empty(0)  # fmt: skip

    meets = good.copy()
    if slo_ttft_ms is not None:
        meets &= ttft_ms <= slo_ttft_ms
    if slo_tpot_ms is not None:
        meets &= np.where(many, tpot_ms, 0.0) <= slo_tpot_ms
    within = int(np.count_nonzero(meets))
    n_finished = int(np.count_nonzero(measured & finished))
    has_slo = slo_ttft_ms is not None or slo_tpot_ms is not None
    reported = np.asarray(table.column("usage_reported").to_pylist(), dtype=object)[good]
    return clean_json({
        "ttft_ms": _distribution(ttft_ms[good]),
        "tpot_ms": _distribution(tpot_ms[many]),
        "itl_ms": _distribution(itl_ms),
        "queue_wait_ms": empty_summary(),
        "tokens": {"input_per_s": float(np.nansum(inputs[good])) / span_s,
                   "output_per_s": float(np.nansum(output[good])) / span_s,
                   "input": int(np.nansum(inputs[good])), "output": int(np.nansum(output[good])),
                   "usage_reported_share": float(np.mean(reported == True)) if reported.size else None,  # noqa: E712
                   "chunks_per_token": _chunks_per_token(table, good)},
        "slo": {"latency_ms": None, "ttft_ms": slo_ttft_ms, "tpot_ms": slo_tpot_ms, "percentile": None,
                "attainment": within / n_finished if has_slo and n_finished else None,
                "goodput_rps": within / span_s if has_slo else None, "within": within if has_slo else None},
    })


def _chunks_per_token(table: pa.Table, good: np.ndarray) -> float | None:
    """Content chunks per output token over the completed requests: 1 when the server streams one
    token a chunk (vLLM's default), below 1 when it bundles (then ITL is per chunk, not per token)."""
    chunks = np.asarray(table.column("chunks").to_numpy(zero_copy_only=False), dtype=np.float64)[good]
    output = np.asarray(table.column("output_tokens").to_numpy(zero_copy_only=False), dtype=np.float64)[good]
    total = float(np.nansum(output))
    return float(np.nansum(chunks)) / total if total else None


def llm_warnings(figures: dict[str, Any], errors: list[str | None], failed: np.ndarray) -> list[str]:
    """What a reader of an LLM step must know: the commonest failures of the measured requests (a
    non-streaming endpoint, an error chunk, a truncated stream: `sse.py`'s messages) and whether
    the server reported usage (if not, output tokens are counted chunks)."""
    out = []
    texts = [str(errors[i]).split(":", 1)[0] for i in np.flatnonzero(failed) if errors[i]]
    if texts:
        kinds, counts = np.unique(np.asarray(texts, dtype=object).astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:3]
        listed = "; ".join(f"{counts[i]} x {kinds[i]}" for i in order)
        out.append(f"{len(texts)} measured requests failed ({listed}); their rows' error column says why")
    if figures["tokens"]["usage_reported_share"] == 0.0:
        out.append("the server reported no usage (stream_options.include_usage): output tokens are the "
                   "content chunks counted, and prompt tokens the counts asked for")
    return out
