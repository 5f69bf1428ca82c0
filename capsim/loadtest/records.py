"""Per-request records as they are collected inside a Locust process (no Locust import here).

Each request yields one row: when it was meant to be sent (`intended_s`, from the open-loop
schedule), when it was actually sent (`sent_s`), how long the response took from the actual send
(`latency_ms`) and from the intended send (`latency_corrected_ms`, the coordinated-omission
correction of wrk2: a request held back by a slow generator or a full connection pool is charged
the time it waited), plus status, response bytes, error text, the request's name and its *kind*
(`inference` or `other`, see `request_kind`). Times are epoch seconds (`time.time()`), the clock the
telemetry scraper and the reference server's batch log also use. A request still in flight when the
run is stopped is recorded as `interrupted`: its send time, no latency (see `record_interrupted`).

The recorder buffers rows as plain lists (appending is the cheapest thing a greenlet can do between
sends) and keeps HDR histograms of the measured (post-warm-up) requests, so that the summary can be
computed from histograms merged exactly across workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from capsim.loadtest.histogram import LatencyHistogram

REQUEST_SCHEMA = pa.schema(
    [
        ("intended_s", pa.float64()),
        ("sent_s", pa.float64()),
        ("latency_ms", pa.float64()),
        ("latency_corrected_ms", pa.float64()),
        ("status", pa.int32()),
        ("bytes", pa.int64()),
        ("error", pa.string()),
        ("name", pa.string()),
        ("worker", pa.int32()),
        # What the server says about the request (capsim's reference server sends these headers;
        # null for servers that do not): its queue wait, its compute time and the batch it ran in.
        ("server_queue_ms", pa.float64()),
        ("server_compute_ms", pa.float64()),
        ("server_batch_size", pa.int32()),
        # `inference` or `other` (health checks, metadata, metrics...): calibration keeps only inference.
        ("kind", pa.string()),
        # Streamed LLM requests (--protocol openai; null otherwise), as `sse.py` defines them: the
        # token counts asked for, the first token from the actual send, the gaps between content
        # chunks, the counts the server reported (`usage`) or else counted, and the chunks that
        # carried text. TTFT from the intended send is `ttft_ms` plus the send lag. `request_id` is
        # the X-Request-Id the request carried (`s<step>-<arrival number>`), which the reference LLM
        # server writes into its step log's `request_ids`.
        ("request_id", pa.string()),
        ("requested_input_tokens", pa.int32()),
        ("requested_output_tokens", pa.int32()),
        ("ttft_ms", pa.float64()),
        ("itl_ms", pa.list_(pa.float32())),
        ("input_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("chunks", pa.int32()),
        ("usage_reported", pa.bool_()),
    ]
)
LLM_COLUMNS: tuple[str, ...] = ("request_id", "requested_input_tokens", "requested_output_tokens", "ttft_ms", "itl_ms",
                                "input_tokens", "output_tokens", "chunks", "usage_reported")
SERVER_HEADERS: dict[str, str] = {"x-queue-ms": "server_queue_ms", "x-compute-ms": "server_compute_ms",
                                  "x-batch-size": "server_batch_size"}
ServerTimes = tuple[float | None, float | None, int | None]
NO_SERVER_TIMES: ServerTimes = (None, None, None)


def server_times(get: Any) -> ServerTimes:
    """(queue ms, compute ms, batch size) from a header lookup `get(name) -> str | None`; None where
    a header is missing or unreadable."""
    def number(name: str) -> float | None:
        try:
            value = get(name)
            return float(value) if value is not None else None
        except Exception:  # a header we cannot read must never turn a success into a failure
            return None

    batch = number("x-batch-size")
    return number("x-queue-ms"), number("x-compute-ms"), int(batch) if batch is not None else None
COLUMNS: tuple[str, ...] = tuple(REQUEST_SCHEMA.names)

# HTTP statuses that mean "the server refused the request because it was full" (a rejection in
# the simulator's sense) and "the request ran out of time" (timed_out).
REJECTED_STATUSES = frozenset({429, 503})
TIMED_OUT_STATUSES = frozenset({408, 504})
STATUS_TIMEOUT = 0  # status recorded when no response came back (connection error or client timeout)
INTERRUPTED = "interrupted"  # error text (and outcome) of a request still in flight when the run stopped

INFERENCE = "inference"
OTHER = "other"
# KServe v2 / Triton infer (`/v2/models/M/infer`, `/v2/models/M/versions/V/infer`) and capsim's
# JSON route (`/predict/M`, the reference server's): the routes that run the model.
_INFERENCE_ROUTE = re.compile(r"^(/v2/models/[^/]+(/versions/[^/]+)?/infer|/predict/[^/]+)/?$")


def request_kind(name: str, url: str | None, inference_names: Iterable[str] = ()) -> str:
    """`inference` or `other`: which requests measure the model (and may be fitted by calibration).

    A request is inference when its name (Locust's `name`, the URL path by default) is one the user
    marked (`--inference-name`, and the request capsim itself sends), or when its path — the URL's,
    else the name when it is a path — is the KServe v2 infer route `/v2/models/M[/versions/V]/infer`
    or capsim's JSON route `/predict/M`. Everything else (health checks, metadata, `/metrics`, a
    login...) is `other`: measured and reported per name, never fitted as the model's time.
    """
    if name in inference_names:
        return INFERENCE
    path = urlsplit(url).path if url else (name if name.startswith("/") else "")
    return INFERENCE if _INFERENCE_ROUTE.match(path) else OTHER


def outcome(status: int, error: str | None) -> str:
    """`completed`, `rejected`, `timed_out`, `interrupted` or `error`: the simulator's request
    outcomes, plus requests cut off by the end of the run, plus errors."""
    if error == INTERRUPTED:
        return "interrupted"
    if 200 <= status < 300 and not error:
        return "completed"
    if status in REJECTED_STATUSES:
        return "rejected"
    if status in TIMED_OUT_STATUSES or (status == STATUS_TIMEOUT and error and "timeout" in error.lower()):
        return "timed_out"
    return "error"


@dataclass
class RequestRecorder:
    """Row buffers and measurement histograms of one worker process.

    `record` only appends to lists (it runs between sends, where every microsecond delays the
    schedule); the histograms are brought up to date in bulk, with numpy, when rows are drained.
    """

    worker: int = 0
    start_s: float | None = None  # t0 of the run on this worker (epoch seconds); None until configured
    warmup_s: float = 0.0
    _rows: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    corrected: LatencyHistogram = field(default_factory=LatencyHistogram)
    uncorrected: LatencyHistogram = field(default_factory=LatencyHistogram)
    send_lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    recorded: int = 0
    _unmeasured: list[dict[str, list[Any]]] = field(default_factory=list)  # drained before t0 was known

    def configure(self, start_s: float, warmup_s: float, worker: int | None = None) -> None:
        """Set t0 and the warm-up; rows drained before this are entered into the histograms now."""
        self.start_s = start_s
        self.warmup_s = warmup_s
        if worker is not None:
            self.worker = worker
            self._rows["worker"] = [worker] * len(self._rows["worker"])
        pending, self._unmeasured = self._unmeasured, []
        for rows in pending:
            self._measure(rows)

    def record(
        self,
        intended_s: float,
        sent_s: float,
        latency_ms: float,
        status: int,
        n_bytes: int,
        error: str | None,
        name: str,
        server: ServerTimes = NO_SERVER_TIMES,
        kind: str = INFERENCE,
        llm: dict[str, Any] | None = None,
    ) -> None:
        """Append one finished request (`llm`: the LLM_COLUMNS of a streamed request)."""
        rows = self._rows
        rows["intended_s"].append(intended_s)
        rows["sent_s"].append(sent_s)
        rows["latency_ms"].append(latency_ms)
        lag_s = sent_s - intended_s
        rows["latency_corrected_ms"].append(latency_ms + lag_s * 1000.0 if lag_s > 0.0 else latency_ms)
        rows["status"].append(status)
        rows["bytes"].append(n_bytes)
        rows["error"].append(error)
        rows["name"].append(name)
        rows["worker"].append(self.worker)
        rows["server_queue_ms"].append(server[0])
        rows["server_compute_ms"].append(server[1])
        rows["server_batch_size"].append(server[2])
        rows["kind"].append(kind)
        self._llm(llm)
        self.recorded += 1

    def _llm(self, llm: dict[str, Any] | None) -> None:
        rows = self._rows
        for column in LLM_COLUMNS:
            rows[column].append(llm.get(column) if llm else None)

    def record_interrupted(self, intended_s: float, sent_s: float, name: str, kind: str = INFERENCE,
                           llm: dict[str, Any] | None = None) -> None:
        """Append a request that was sent but not answered when the run stopped: its send time is
        known, its latency is not (null), so it is counted, never averaged (a streamed request keeps
        what it had received: its first-token time and gaps so far)."""
        rows = self._rows
        for column, value in (("intended_s", intended_s), ("sent_s", sent_s), ("latency_ms", None),
                              ("latency_corrected_ms", None), ("status", STATUS_TIMEOUT), ("bytes", 0),
                              ("error", INTERRUPTED), ("name", name), ("worker", self.worker),
                              ("server_queue_ms", None), ("server_compute_ms", None), ("server_batch_size", None),
                              ("kind", kind)):
            rows[column].append(value)
        self._llm(llm)
        self.recorded += 1

    def _measure(self, rows: dict[str, list[Any]]) -> None:
        assert self.start_s is not None
        intended = np.asarray(rows["intended_s"], dtype=np.float64)
        if intended.size == 0:
            return
        # The histograms are the summary's headline figures: inference requests only (a custom
        # locustfile's health checks are reported per name, apart).
        inference = np.array([k == INFERENCE for k in rows["kind"]], dtype=bool)
        measured = (intended >= self.start_s + self.warmup_s) & inference
        status = np.asarray(rows["status"], dtype=np.int64)
        no_error = np.array([e is None for e in rows["error"]], dtype=bool)
        ok = measured & (status >= 200) & (status < 300) & no_error
        lag_ms = np.maximum(np.asarray(rows["sent_s"], dtype=np.float64) - intended, 0.0) * 1000.0
        self.send_lag.record_many_ms(lag_ms[measured])
        self.uncorrected.record_many_ms(np.asarray(rows["latency_ms"], dtype=np.float64)[ok])
        self.corrected.record_many_ms(np.asarray(rows["latency_corrected_ms"], dtype=np.float64)[ok])

    def drain_rows(self) -> dict[str, list[Any]]:
        """The rows buffered since the last drain (the buffers start empty again); the histograms
        take them in on the way out."""
        rows, self._rows = self._rows, {c: [] for c in COLUMNS}
        if self.start_s is None:
            self._unmeasured.append(rows)
        else:
            self._measure(rows)
        return rows

    @property
    def buffered(self) -> int:
        """Rows waiting for the next drain."""
        return len(self._rows["intended_s"])

    def histograms(self) -> dict[str, str]:
        """Cumulative measurement histograms (of the rows drained so far), encoded for shipping."""
        return {
            "latency_corrected_ms": self.corrected.encode(),
            "latency_ms": self.uncorrected.encode(),
            "send_lag_ms": self.send_lag.encode(),
        }
