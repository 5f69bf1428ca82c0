"""The reference servers' own logs, paged into the run folder while a load test runs.

capsim's reference servers keep a ring of their recent records and serve it at `GET PATH?since=ID`
(`{KEY: [...], "last_id": N}`; reference_server/batchlog.py): the real-time server its batches
(`/debug/batches`, → `batches.parquet`, what real-time calibration fits), the LLM server its engine
steps (`/debug/steps`, → `steps.parquet`, what white-box LLM calibration fits: prefill tokens,
decoding sequences, context tokens per step). `LogPager` pages one such log; the telemetry thread
(telemetry.py) calls it at every scrape.

The ring holds the server's whole history (up to its ring size): a run folder must hold only the
records of its own run, so paging starts after the last record the server had logged when the
collector started (`baseline`). A server that does not report its `last_id` is paged from the start,
keeping only records that ended after that moment (which assumes the server's clock agrees with
this machine's). Ids are consecutive: a jump between two pages means the ring dropped records in
between (`missed`; a larger ring or a shorter scrape interval keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import requests

from capsim.loadtest.target import PROBE_TIMEOUT_S

HTTP_TIMEOUT_S = 2.0
MAX_PAGES = 100  # per call: bounded, the next scrape goes on

BATCH_SCHEMA = pa.schema(
    [("batch_id", pa.int64()), ("model", pa.string()), ("instance", pa.int64()), ("size", pa.int64()),
     ("start_s", pa.float64()), ("end_s", pa.float64()), ("queue_wait_ms", pa.list_(pa.float64())),
     ("arrival_s", pa.list_(pa.float64()))]
)
# reference_server/llm/steplog.py `step_record`.
STEP_SCHEMA = pa.schema(
    [("step", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("duration_ms", pa.float64()),
     ("prefill_tokens", pa.int64()), ("decode_seqs", pa.int64()), ("context_tokens", pa.int64()),
     ("attention_pairs", pa.float64()), ("new_seqs", pa.int64()), ("scheduled_seqs", pa.int64()),
     ("finished", pa.int64()), ("preempted", pa.int64()), ("running", pa.int64()), ("waiting", pa.int64()),
     ("kv_blocks_used", pa.int64()), ("kv_blocks_total", pa.int64()), ("request_ids", pa.list_(pa.string())),
     ("scheduled_tokens", pa.list_(pa.int64()))]
)


@dataclass(frozen=True)
class ServerLog:
    """One paged log: its route, the answer's list key, the record's id field, its parquet schema
    and the name of its files (`NAME-SEQ.parquet` parts, merged into `NAME.parquet`)."""

    path: str
    key: str
    id_field: str
    schema: pa.Schema
    name: str


BATCH_LOG = ServerLog("/debug/batches", "batches", "batch_id", BATCH_SCHEMA, "batches")
STEP_LOG = ServerLog("/debug/steps", "steps", "step", STEP_SCHEMA, "steps")


def serves_log(base: str, log: ServerLog) -> bool:
    """Whether the server at `base` answers `log`'s route (capsim's reference servers do)."""
    try:
        response = requests.get(f"{base}{log.path}", params={"since": 0, "limit": 0},
                                timeout=PROBE_TIMEOUT_S)
        return response.status_code == 200 and log.key in response.json()
    except (requests.RequestException, ValueError, TypeError, AttributeError):
        return False


class LogPager:
    """Pages `log` from the server at `base`; `take()` hands over the records gathered since the last
    call, as dicts of the log's schema columns."""

    def __init__(self, log: ServerLog, base: str, session: requests.Session) -> None:
        self.log = log
        self.base = base
        self.session = session
        self.last_id = 0
        self.baseline_known = False
        self.started_s = 0.0
        self.seen: set[int] = set()
        self.missed = 0
        self._records: list[dict[str, Any]] = []

    def start(self, started_s: float) -> None:
        """Note where the server's log stands now (module docstring): the run's records come after."""
        self.started_s = started_s
        baseline = self._baseline()
        self.baseline_known = baseline is not None
        self.last_id = baseline or 0

    def _baseline(self) -> int | None:
        """The id of the server's last record now (None when it does not say); asks for no records."""
        try:
            response = self.session.get(f"{self.base}{self.log.path}", params={"since": 0, "limit": 0},
                                        timeout=HTTP_TIMEOUT_S)
            last_id = response.json().get("last_id") if response.status_code == 200 else None
        except Exception:  # telemetry never aborts a load test: page from the start, filter by time
            return None
        return last_id if isinstance(last_id, int) and not isinstance(last_id, bool) and last_id >= 0 else None

    def fetch(self) -> None:
        """Page through the records logged since the last call (bounded; errors end the call)."""
        key, id_field = self.log.key, self.log.id_field
        for _ in range(MAX_PAGES):
            try:
                response = self.session.get(f"{self.base}{self.log.path}", params={"since": self.last_id},
                                            timeout=HTTP_TIMEOUT_S)
                records = response.json().get(key, []) if response.status_code == 200 else []
            except Exception:
                return
            fresh = [r for r in records if int(r.get(id_field, -1)) not in self.seen]
            if not fresh:
                return
            previous = self.last_id
            ids = [int(r[id_field]) for r in fresh]
            if (previous or self.baseline_known) and min(ids) > previous + 1:
                self.missed += min(ids) - previous - 1
            self.last_id = max(previous, *ids)
            if not self.baseline_known:
                fresh = [r for r in fresh if float(r.get("end_s") or 0.0) >= self.started_s]
            for record in fresh:
                self.seen.add(int(record[id_field]))
                self._records.append({name: record.get(name) for name in self.log.schema.names})

    def take(self) -> list[dict[str, Any]]:
        """The records gathered since the last `take`."""
        records, self._records = self._records, []
        return records

    def describe(self) -> dict[str, Any]:
        """`{"enabled", "count", "missed"}` for summary.json."""
        return {"enabled": True, "count": len(self.seen), "missed": self.missed}
