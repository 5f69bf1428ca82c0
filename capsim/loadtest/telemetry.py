"""Telemetry gathered beside the load: the target's Prometheus metrics, NVML GPU samples, and the
reference servers' batch or step logs (server_logs.py), all stamped with epoch seconds (the clock
of the request records).

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
from capsim.loadtest.server_logs import BATCH_LOG, HTTP_TIMEOUT_S, STEP_LOG, LogPager
from capsim.loadtest.target import base_url

TELEMETRY_SCHEMA = pa.schema(
    [("time_s", pa.float64()), ("source", pa.string()), ("metric", pa.string()), ("labels", pa.string()),
     ("value", pa.float64())]
)
WRITE_EVERY_S = 5.0


class TelemetryCollector:
    """Scrapes `/metrics` every `interval_s`, samples NVML every 100 ms when asked, and pages the
    reference servers' own logs (`batches`: the real-time server's `/debug/batches`; `steps`: the LLM
    server's `/debug/steps`; server_logs.py); rows go to `parts_dir` as parquet parts."""

    def __init__(
        self, target: str, parts_dir: Path, interval_s: float, nvml: bool, batches: bool, steps: bool = False
    ) -> None:
        self.base = base_url(target)
        self.parts_dir = parts_dir
        self.interval_s = interval_s
        self.fetch_batches = batches
        self.nvml = NvmlSampler() if nvml else None
        self._rows: list[tuple[float, str, str, str, float]] = []
        self.started_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capsim-telemetry", daemon=True)
        self._session = requests.Session()
        self.pagers = [LogPager(log, self.base, self._session)
                       for log, wanted in ((BATCH_LOG, batches), (STEP_LOG, steps)) if wanted]  # fmt: skip
        self._seq = 0
        self.scrapes_ok = 0
        self.scrape_errors = 0
        self.last_error: str | None = None

    def describe(self) -> dict[str, Any]:
        """What was collected and why not (for manifest.json and summary.json)."""
        logs = {pager.log.name: pager.describe() for pager in self.pagers}
        return {
            "prometheus": {"url": f"{self.base}/metrics", "interval_s": self.interval_s, "ok": self.scrapes_ok,
                           "errors": self.scrape_errors, "last_error": self.last_error},
            "nvml": {"enabled": bool(self.nvml and self.nvml.enabled),
                     "reason": (self.nvml.reason if self.nvml else "target is not on this machine"),
                     "interval_s": SAMPLE_INTERVAL_S},
            "batches": logs.get("batches", {"enabled": False, "count": 0, "missed": 0}),
            **({"steps": logs["steps"]} if "steps" in logs else {}),
        }

    def start(self) -> None:
        """Note where the servers' logs stand, then start the background thread."""
        self.started_s = time.time()
        for pager in self.pagers:
            pager.start(self.started_s)
        self._thread.start()

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

    def _write(self) -> None:
        if self._rows:
            columns = list(zip(*self._rows, strict=True))
            table = pa.Table.from_arrays([pa.array(c) for c in columns], schema=TELEMETRY_SCHEMA)
            write_table_atomic(self.parts_dir / f"telemetry-{self._seq:06d}.parquet", table)
            self._rows = []
        for pager in self.pagers:
            records = pager.take()
            if records:
                table = pa.Table.from_pylist(records, schema=pager.log.schema)
                write_table_atomic(self.parts_dir / f"{pager.log.name}-{self._seq:06d}.parquet", table)
        self._seq += 1

    def _run(self) -> None:
        next_scrape = time.monotonic()
        next_write = time.monotonic() + WRITE_EVERY_S
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            if now >= next_scrape or stopping:
                self._scrape_metrics()
                for pager in self.pagers:
                    pager.fetch()
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
