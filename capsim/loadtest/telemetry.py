"""Telemetry gathered beside the load: the target's Prometheus metrics, NVML GPU samples, and the
reference server's batch log, all stamped with epoch seconds (the clock of the request records).

One background thread in the parent `capsim` process does the scraping (plain `requests`, no
gevent); it writes its rows as parquet parts every few seconds, so an interrupted run keeps them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests

from capsim.loadtest.nvml import SAMPLE_INTERVAL_S, NvmlSampler
from capsim.loadtest.parts import write_table_atomic
from capsim.loadtest.prometheus_text import parse_samples
from capsim.loadtest.target import base_url

TELEMETRY_SCHEMA = pa.schema(
    [("time_s", pa.float64()), ("source", pa.string()), ("metric", pa.string()), ("labels", pa.string()),
     ("value", pa.float64())]
)
BATCH_SCHEMA = pa.schema(
    [("batch_id", pa.int64()), ("model", pa.string()), ("instance", pa.int64()), ("size", pa.int64()),
     ("start_s", pa.float64()), ("end_s", pa.float64()), ("queue_wait_ms", pa.list_(pa.float64())),
     ("arrival_s", pa.list_(pa.float64()))]
)
WRITE_EVERY_S = 5.0
HTTP_TIMEOUT_S = 2.0


class TelemetryCollector:
    """Scrapes `/metrics` every `interval_s`, samples NVML every 100 ms when asked, and (for the
    reference server) pages through `/debug/batches`; rows go to `parts_dir` as parquet parts.

    The batch log holds the server's whole history (up to its ring size, 100,000 batches by default):
    a run folder must hold only the batches of its own run, so paging starts after the last batch
    the server had logged when the collector started (`_batch_baseline`). A server that does not
    report its `last_id` is paged from the start, keeping only batches that ended after that moment
    (which assumes the server's clock agrees with this machine's).
    """

    def __init__(
        self, target: str, parts_dir: Path, interval_s: float, nvml: bool, batches: bool
    ) -> None:
        self.base = base_url(target)
        self.parts_dir = parts_dir
        self.interval_s = interval_s
        self.fetch_batches = batches
        self.nvml = NvmlSampler() if nvml else None
        self._rows: list[tuple[float, str, str, str, float]] = []
        self._batches: list[dict[str, Any]] = []
        self._last_batch_id = 0
        self._baseline_known = False  # whether paging starts from the server's last_id (see start)
        self.started_s = 0.0
        self._seen_batches: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capsim-telemetry", daemon=True)
        self._session = requests.Session()
        self._seq = 0
        self.batches_missed = 0
        self.scrapes_ok = 0
        self.scrape_errors = 0
        self.last_error: str | None = None

    def describe(self) -> dict[str, Any]:
        """What was collected and why not (for manifest.json and summary.json)."""
        return {
            "prometheus": {"url": f"{self.base}/metrics", "interval_s": self.interval_s, "ok": self.scrapes_ok,
                           "errors": self.scrape_errors, "last_error": self.last_error},
            "nvml": {"enabled": bool(self.nvml and self.nvml.enabled),
                     "reason": (self.nvml.reason if self.nvml else "target is not on this machine"),
                     "interval_s": SAMPLE_INTERVAL_S},
            "batches": {"enabled": self.fetch_batches, "count": len(self._seen_batches),
                        "missed": self.batches_missed},
        }

    def start(self) -> None:
        """Note where the server's batch log stands, then start the background thread."""
        self.started_s = time.time()
        if self.fetch_batches:
            baseline = self._batch_baseline()
            self._baseline_known = baseline is not None
            self._last_batch_id = baseline or 0
        self._thread.start()

    def _batch_baseline(self) -> int | None:
        """The id of the server's last logged batch now (None when it does not say): the run's
        batches come after it. Asks for no records (`limit=0`), only the log's `last_id`."""
        try:
            response = self._session.get(f"{self.base}/debug/batches", params={"since": 0, "limit": 0},
                                         timeout=HTTP_TIMEOUT_S)
            last_id = response.json().get("last_id") if response.status_code == 200 else None
        except Exception:  # telemetry never aborts a load test: page from the start, filter by time
            return None
        return last_id if isinstance(last_id, int) and not isinstance(last_id, bool) and last_id >= 0 else None

    def stop(self) -> None:
        """Take one last scrape, write what is buffered and stop."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        if self.nvml is not None:
            self.nvml.close()

    def _scrape_metrics(self) -> None:
        try:
            response = self._session.get(f"{self.base}/metrics", timeout=HTTP_TIMEOUT_S)
            now_s = time.time()
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            self._rows.extend((now_s, "prometheus", n, labels, v) for n, labels, v in parse_samples(response.text))
            self.scrapes_ok += 1
        except Exception as exc:  # telemetry never aborts a load test
            self.scrape_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def _fetch_batches(self) -> None:
        for _ in range(100):  # page through, bounded
            try:
                response = self._session.get(f"{self.base}/debug/batches", params={"since": self._last_batch_id},
                                             timeout=HTTP_TIMEOUT_S)
                batches = response.json().get("batches", []) if response.status_code == 200 else []
            except Exception:
                return
            fresh = [b for b in batches if int(b.get("batch_id", -1)) not in self._seen_batches]
            if not fresh:
                return
            # Batch ids are consecutive: a jump means the server's ring buffer dropped some between
            # two fetches (a longer --batch-ring-size or a shorter --scrape-interval keeps them).
            previous = self._last_batch_id
            ids = [int(b["batch_id"]) for b in fresh]
            if (previous or self._baseline_known) and min(ids) > previous + 1:
                self.batches_missed += min(ids) - previous - 1
            self._last_batch_id = max(previous, *ids)
            if not self._baseline_known:
                fresh = [b for b in fresh if float(b.get("end_s") or 0.0) >= self.started_s]
            for batch in fresh:
                self._seen_batches.add(int(batch["batch_id"]))
                self._batches.append({name: batch.get(name) for name in BATCH_SCHEMA.names})

    def _write(self) -> None:
        if self._rows:
            columns = list(zip(*self._rows, strict=True))
            table = pa.Table.from_arrays([pa.array(c) for c in columns], schema=TELEMETRY_SCHEMA)
            write_table_atomic(self.parts_dir / f"telemetry-{self._seq:06d}.parquet", table)
            self._rows = []
        if self._batches:
            table = pa.Table.from_pylist(self._batches, schema=BATCH_SCHEMA)
            write_table_atomic(self.parts_dir / f"batches-{self._seq:06d}.parquet", table)
            self._batches = []
        self._seq += 1

    def _run(self) -> None:
        next_scrape = time.monotonic()
        next_write = time.monotonic() + WRITE_EVERY_S
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            if now >= next_scrape or stopping:
                self._scrape_metrics()
                if self.fetch_batches:
                    self._fetch_batches()
                next_scrape += self.interval_s
                if next_scrape < now:  # fell behind (slow target): skip, do not burst
                    next_scrape = now + self.interval_s
            if self.nvml is not None and self.nvml.enabled:
                self._rows.extend(self.nvml.sample())
            if now >= next_write or stopping:
                try:
                    self._write()
                except OSError as exc:
                    self.last_error = f"writing telemetry: {exc}"
                next_write = now + WRITE_EVERY_S
            if stopping:
                return
            wait_s = SAMPLE_INTERVAL_S if self.nvml is not None and self.nvml.enabled else next_scrape - now
            self._stop.wait(max(min(wait_s, next_scrape - time.monotonic()), 0.0))
