"""`capsim loadtest --protocol openai` (Locust as real subprocesses) against a small SSE server in
this process whose timing and faults are known exactly: it sleeps a known time before the first
token and between tokens, and request number i (the number that leads every prompt) gets fault
i % 7. The timings come back within tolerance; every fault is a row with its own status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

CAPSIM = [sys.executable, "-m", "capsim.cli.main", "loadtest"]
FIRST_S = 0.15  # prompt to first token
GAP_S = 0.05  # between tokens
TOKENS = 5
# Request i % 7: 0, 1 normal; 2 no usage chunk; 3 error chunk after 2 tokens; 4 ends without [DONE];
# 5 a plain JSON answer to stream: true; 6 refused with 400 and an OpenAI error object.
FAULTS = ("ok", "ok", "no_usage", "error", "truncated", "not_stream", "refused")


class FakeOpenAi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    slow = False  # the interrupt test: long streams

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fake-llm", "object": "model"}]})
        else:
            self._json(404, {"error": "not found"})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: object) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        number = int(body["prompt"].split(" ", 1)[0])
        fault = FAULTS[number % len(FAULTS)]
        n_out = int(body["max_tokens"])
        if fault == "refused":
            self._json(400, {"error": {"message": "prompt is too long", "type": "BadRequestError", "code": 400}})
            return
        if fault == "not_stream":
            self._json(200, {"choices": [{"text": "x" * n_out}], "usage": {"prompt_tokens": 1}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        gap_s = 0.5 if self.slow else GAP_S
        time.sleep(FIRST_S)
        for k in range(n_out):
            if k:
                time.sleep(gap_s)
            if fault in ("error", "truncated") and k == 2:
                if fault == "error":
                    self._event({"error": {"message": "engine died", "code": 500}})
                break
            self._event({"choices": [{"index": 0, "text": "t", "finish_reason": "length" if k == n_out - 1 else None}]})
        else:
            if fault != "no_usage":
                usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n_out}
                self._event({"choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    FakeOpenAi.slow = False


def test_known_delays_and_every_fault(fake: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([*CAPSIM, "--target", fake, "--protocol", "openai", "--input-tokens", "40",
                           "--output-tokens", str(TOKENS), "--arrival", "constant", "--rate", "4", "--duration", "7",
                           "--warmup", "0", "--out", str(out), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    rows = pq.read_table(out / "requests.parquet").to_pylist()
    assert len(rows) == 28 == summary["generator"]["dispatched"]
    # Constant arrivals, one worker: row i is request i.
    for i, row in enumerate(rows):
        fault = FAULTS[i % len(FAULTS)]
        assert row["requested_input_tokens"] == 40 and row["requested_output_tokens"] == TOKENS
        if fault == "ok":
            assert row["error"] is None and row["status"] == 200 and row["usage_reported"] is True
            assert row["input_tokens"] == 40 and row["output_tokens"] == TOKENS and len(row["itl_ms"]) == TOKENS - 1
        elif fault == "no_usage":  # the chunks counted; the prompt length asked for
            assert row["error"] is None and row["usage_reported"] is False
            assert row["output_tokens"] == TOKENS and row["input_tokens"] == 40
        elif fault == "error":
            assert row["error"] == "error mid-stream: engine died" and row["chunks"] == 2
        elif fault == "truncated":
            assert row["error"].startswith("truncated stream") and row["chunks"] == 2
        elif fault == "not_stream":
            assert row["error"].startswith("not a stream: the endpoint answered application/json")
        else:  # the server's own message, in one line
            assert row["error"] == "HTTP 400: prompt is too long" and row["status"] == 400
    assert summary["requests"]["completed"] == 12 and summary["requests"]["errors"] == 16
    assert summary["warnings"][0].startswith("16 measured requests failed (4 x HTTP 400; 4 x error mid-stream; "
                                             "4 x not a stream)")
    ok = [r for i, r in enumerate(rows) if FAULTS[i % len(FAULTS)] in ("ok", "no_usage")]
    ttft_ms = np.median([r["ttft_ms"] for r in ok])
    itl_ms = np.median(np.concatenate([r["itl_ms"] for r in ok]))
    tpot_ms = np.median([(r["latency_ms"] - r["ttft_ms"]) / (TOKENS - 1) for r in ok])
    # A sleep never returns early; on a busy 2-core machine it may return a few ms late.
    assert FIRST_S * 1000 <= ttft_ms < FIRST_S * 1000 + 40
    assert GAP_S * 1000 * 0.98 <= itl_ms < GAP_S * 1000 + 20
    assert GAP_S * 1000 * 0.98 <= tpot_ms < GAP_S * 1000 + 20
    assert summary["ttft_ms"]["p50"] == pytest.approx(ttft_ms, rel=0.2)
    assert summary["tpot_ms"]["p50"] == pytest.approx(tpot_ms, rel=0.2)
    assert summary["tokens"]["output_per_s"] == pytest.approx(12 * TOKENS / 7.0, rel=0.01)


def test_interrupted_run_keeps_every_row(fake: str, tmp_path: Path) -> None:
    FakeOpenAi.slow = True  # each stream lasts ~2 s: several are in flight at the interrupt
    out = tmp_path / "run"
    proc = subprocess.Popen([*CAPSIM, "--target", fake, "--protocol", "openai", "--input-tokens", "20",
                             "--output-tokens", "5", "--arrival", "constant", "--rate", "4", "--duration", "30",
                             "--warmup", "0", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until rows are being written
        if any((out / "parts").rglob("requests-w*.parquet")):
            break
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    summary = json.loads((out / "summary.json").read_text())
    rows = pq.read_table(out / "requests.parquet").to_pylist()
    assert summary["partial"] is True and summary["status"] == "interrupted"
    assert len(rows) == summary["generator"]["dispatched"] > 0
    cut = [r for r in rows if r["error"] == "interrupted"]
    assert cut, "streams in flight at the interrupt are kept as interrupted rows"
    assert all(r["requested_output_tokens"] == 5 and r["latency_ms"] is None for r in cut)
    # Those past their first token keep it.
    assert any(r["ttft_ms"] is not None for r in cut)
