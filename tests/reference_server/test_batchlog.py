"""The batch log publishes records in id order, once, to the ring and the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reference_server.batcher import Batch, PendingRequest
from reference_server.batchlog import BatchLog, encode_batch


def test_out_of_order_finishes_are_published_in_id_order(tmp_path: Path) -> None:
    log = BatchLog(tmp_path / "batches.jsonl", ring_size=3)
    log.append(2, b'{"batch_id":2}')
    assert log.since(0) == [] and log.last_id == 0  # 1 is still running: hold 2 back
    log.append(1, b'{"batch_id":1}')
    assert log.since(0) == [b'{"batch_id":1}', b'{"batch_id":2}'] and log.last_id == 2
    log.append(3, b'{"batch_id":3}')
    log.append(4, b'{"batch_id":4}')
    assert log.since(2) == [b'{"batch_id":3}', b'{"batch_id":4}']
    assert log.since(0) == [b'{"batch_id":2}', b'{"batch_id":3}', b'{"batch_id":4}']  # ring of 3
    assert log.since(0, limit=1) == [b'{"batch_id":2}']
    assert log.since(4) == []
    log.close()
    ids = [json.loads(line)["batch_id"] for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert ids == [1, 2, 3, 4]


def test_record_fields() -> None:
    loop_future = None
    requests = [
        PendingRequest(np.zeros((1, 2)), arrival_mono=10.0, arrival_epoch=1000.0, deadline_mono=1e9,
                       future=loop_future),  # type: ignore[arg-type]
        PendingRequest(np.zeros((2, 2)), arrival_mono=10.004, arrival_epoch=1000.004, deadline_mono=1e9,
                       future=loop_future),  # type: ignore[arg-type]
    ]  # fmt: skip
    batch = Batch(7, 1, requests, start_mono=10.010, start_epoch=1000.010, end_mono=10.015, end_epoch=1000.015)
    record = json.loads(encode_batch(batch, "mlp"))
    assert record["batch_id"] == 7 and record["instance"] == 1 and record["model"] == "mlp"
    assert record["size"] == 2 and record["items"] == 3
    assert record["queue_wait_ms"] == [10.0, 6.0]
    assert record["arrival_s"] == [1000.0, 1000.004]
    assert record["start_s"] == 1000.01 and record["end_s"] == 1000.015
    assert abs(record["compute_ms"] - 5.0) < 1e-6
    assert "error" not in record
    assert json.loads(encode_batch(batch, "mlp", "RuntimeError: x"))["error"] == "RuntimeError: x"
