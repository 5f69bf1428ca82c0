"""The per-batch log: one JSON record per batch, for calibration.

Each record is::

    {"batch_id": 17, "model": "cnn", "instance": 0, "size": 3, "items": 3,
     "start_s": 1763822990.123456, "end_s": 1763822990.131002, "compute_ms": 7.546,
     "queue_wait_ms": [2.1, 1.0, 0.2], "arrival_s": [1763822990.121356, ...]}

`start_s` is when the batch left the queue, `end_s` when its outputs were ready (so `end_s -
start_s` is the executor busy time, the quantity a profile records); `arrival_s[i]` and
`queue_wait_ms[i]` are per request, in the batch's order. All `*_s` are `time.time()` epoch seconds,
the clock a load generator on the same machine also uses. When clients send ids (the v2 `"id"` field
or an `X-Request-Id` header), `"request_ids"` lists them in the same order.

Records go to a JSON-lines file (flushed per record, so a crash loses nothing already served) and
to a bounded in-memory ring served by `GET /debug/batches?since=ID`. The ring keeps the encoded
bytes, not dicts: cheaper to keep and to serve.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import IO

import orjson

from reference_server.batcher import Batch
from reference_server.paging import page_after

DEFAULT_RING_SIZE = 100_000


def encode_batch(batch: Batch, model: str, error: str | None = None) -> bytes:
    """The JSON record of a finished batch (`error` set when the model raised)."""
    start = batch.start_mono
    record = {
        "batch_id": batch.batch_id,
        "model": model,
        "instance": batch.executor,
        "size": batch.size,
        "items": batch.n_items,
        "start_s": round(batch.start_epoch, 6),
        "end_s": round(batch.end_epoch, 6),
        "compute_ms": round(batch.compute_s * 1e3, 4),
        "queue_wait_ms": [round((start - r.arrival_mono) * 1e3, 4) for r in batch.requests],
        "arrival_s": [round(r.arrival_epoch, 6) for r in batch.requests],
    }
    if any(r.request_id is not None for r in batch.requests):
        record["request_ids"] = [r.request_id for r in batch.requests]
    if error is not None:
        record["error"] = error
    return orjson.dumps(record)


class BatchLog:
    """The ring of recent batch records, plus the optional JSON-lines file.

    With several executors, batches finish out of id order. Records are published (to the ring and
    the file) strictly in id order, each once every lower id has finished, so that a reader who
    asks for `since=<highest id seen>` never skips a batch that was still running.
    """

    def __init__(self, path: Path | None = None, ring_size: int = DEFAULT_RING_SIZE) -> None:
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=ring_size)
        self._held: dict[int, bytes] = {}
        self._next_id = 1
        self._file: IO[bytes] | None = None
        # The ring is read by the event loop and written by it, but close() may run elsewhere.
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")
        self.path = path

    def append(self, batch_id: int, line: bytes) -> None:
        """Record a finished batch; publish it and any held successors that are now in order."""
        with self._lock:
            self._held[batch_id] = line
            while self._next_id in self._held:
                record = self._held.pop(self._next_id)
                self._ring.append((self._next_id, record))
                if self._file is not None:
                    self._file.write(record + b"\n")
                    self._file.flush()
                self._next_id += 1

    def since(self, batch_id: int, limit: int | None = None) -> list[bytes]:
        """Published records with an id greater than `batch_id`, in id order (at most `limit`)."""
        with self._lock:
            if not self._ring:
                return []
            return [line for _, line in page_after(self._ring, self._ring[0][0], batch_id, limit)]

    @property
    def last_id(self) -> int:
        """The highest published batch id (0 before the first)."""
        return self._next_id - 1

    @property
    def size(self) -> int:
        """Records currently held in the ring."""
        return len(self._ring)

    def close(self) -> None:
        """Close the file (the ring stays readable)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
