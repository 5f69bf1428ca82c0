"""A tiny stand-in for the reference server (stdlib only) for the load-test harness's tests.

Serves the same endpoints the harness uses: health, KServe v2 metadata and infer, `/predict/{model}`,
Prometheus `/metrics`, `/debug/batches` (one "batch" per request) and `POST /debug/stall?seconds=T`.
`--delay-ms` slows every response. Run: `python tests/loadtest/fakeserver.py --port P [--delay-ms X]`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATE = {"delay_s": 0.0, "stall_until": 0.0, "served": 0, "next_id": 1}
BATCHES: list[dict] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/v2/health/ready":
            self._send(200, b"{}")
        elif parts.path.startswith("/v2/models/"):
            name = parts.path.split("/")[3]
            meta = {"name": name, "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]}
            self._send(200, json.dumps(meta).encode())
        elif parts.path == "/metrics":
            text = f"# TYPE served counter\nserved_total {STATE['served']}\nqueue_size{{model=\"m\"}} 0\n"
            self._send(200, text.encode(), "text/plain")
        elif parts.path == "/debug/batches":
            since = int(parse_qs(parts.query).get("since", ["0"])[0])
            with LOCK:
                out = [b for b in BATCHES if b["batch_id"] > since][:500]
            self._send(200, json.dumps({"batches": out}).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if parts.path == "/debug/stall":
            seconds = float(parse_qs(parts.query).get("seconds", ["1"])[0])
            STATE["stall_until"] = time.time() + seconds
            self._send(200, b"{}")
            return
        arrival = time.time()
        wait = STATE["stall_until"] - time.time()
        if wait > 0:
            time.sleep(wait)
        if STATE["delay_s"]:
            time.sleep(STATE["delay_s"])
        start = time.time()
        with LOCK:
            STATE["served"] += 1
            batch_id = STATE["next_id"]
            STATE["next_id"] += 1
            BATCHES.append({"batch_id": batch_id, "model": "m", "instance": 0, "size": 1, "start_s": start,
                            "end_s": time.time(), "queue_wait_ms": [(start - arrival) * 1000], "arrival_s": [arrival]})
            del BATCHES[:-5000]
        self._send(200, json.dumps({"model": "m", "outputs": [0.0], "batch_size": 1}).encode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    STATE["delay_s"] = args.delay_ms / 1000.0
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
