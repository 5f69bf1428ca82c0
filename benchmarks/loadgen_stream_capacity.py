"""How many concurrent token streams can one load-generator process time faithfully?

`capsim loadtest --protocol openai` (one Locust worker process) against a scripted SSE server in its
own process (asyncio): every request gets its first token FIRST_MS after it arrives and then one
token every GAP_MS, and the server writes down when it actually sent each chunk. For a ladder of
request rates (so of streams in flight: rate × stream length) it prints, from the same run:

- chunks per second and the worker's CPU use;
- the server's own gaps (p50 / p99: what the server really did, its sleeps included) beside the
  gaps the client measured (`itl_ms`, p50 / p99): their difference is what the client adds;
- the client's TTFT from the actual send beside the server's first-chunk delay.

Usage: python benchmarks/loadgen_stream_capacity.py [--rates 5,20,40,80] [--seconds 8] [--tokens 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FIRST_MS = 50.0
GAP_MS = 20.0


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Any) -> None:
    """Keep-alive HTTP/1.1: each POST gets an SSE stream of max_tokens chunks (chunked encoding)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived_s = time.time()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            if not head.startswith(b"POST"):
                payload = b'{"data": [{"id": "stream-bench"}]}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            n = int(body.get("max_tokens", 16))
            sent: list[float] = []
            start = time.monotonic()
            for k in range(n):
                await asyncio.sleep(max(start + (FIRST_MS + k * GAP_MS) / 1000.0 - time.monotonic(), 0.0))
                event = b'data: {"choices": [{"index": 0, "text": "t"}]}\n\n'
                writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                await writer.drain()
                sent.append(time.time())
            usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": n}}).encode()
            for event in (b"data: " + usage + b"\n\n", b"data: [DONE]\n\n"):
                writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            log.write(json.dumps({"arrived_s": arrived_s, "sent_s": sent}) + "\n")
            log.flush()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def serve(port: int, log_path: str) -> None:
    """Run the scripted SSE server until SIGTERM."""
    async def main() -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            server = await asyncio.start_server(lambda r, w: _handle(r, w, log), "127.0.0.1", port)
            async with server:
                await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


def point(rate: float, seconds: float, tokens: int, workdir: Path) -> dict[str, Any]:
    """One rate: start a fresh server, load it, compare the two sides."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = workdir / f"server-{rate:g}.jsonl"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--log", str(log)])
    time.sleep(1.0)
    out = workdir / f"run-{rate:g}"
    try:
        done = subprocess.run([sys.executable, "-m", "capsim.cli.main", "loadtest", "--target",
                               f"http://127.0.0.1:{port}", "--protocol", "openai", "--model", "stream-bench",
                               "--input-tokens", "16", "--output-tokens", str(tokens), "--rate", str(rate),
                               "--duration", str(seconds), "--warmup", "1", "--max-in-flight", "2000", "--json",
                               "--out", str(out)], capture_output=True, text=True, timeout=seconds + 120)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    if done.returncode not in (0, 130):
        raise SystemExit(done.stderr[-2000:])
    summary = json.loads(done.stdout)
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "requests.parquet").to_pylist()
    client_itl = np.concatenate([np.asarray(r["itl_ms"] or [], dtype=float) for r in rows if r["error"] is None])
    client_ttft = np.array([r["ttft_ms"] for r in rows if r["error"] is None], dtype=float)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    server_gaps = np.concatenate([np.diff(np.asarray(r["sent_s"])) * 1000.0 for r in records])
    server_first = np.array([(r["sent_s"][0] - r["arrived_s"]) * 1000.0 for r in records])
    stream_s = (FIRST_MS + (tokens - 1) * GAP_MS) / 1000.0
    return {
        "rate_rps": rate, "streams_in_flight": round(rate * stream_s, 1), "chunks_per_s": round(rate * tokens),
        "completed": summary["requests"]["completed"], "errors": summary["requests"]["errors"],
        "worker_cpu_mean_percent": summary["generator"]["cpu_percent_mean"],
        "server_gap_ms": [round(float(np.percentile(server_gaps, q)), 2) for q in (50, 99)],
        "client_itl_ms": [round(float(np.percentile(client_itl, q)), 2) for q in (50, 99)],
        "server_first_ms": [round(float(np.percentile(server_first, q)), 2) for q in (50, 99)],
        "client_ttft_ms": [round(float(np.percentile(client_ttft, q)), 2) for q in (50, 99)],
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--rates", default="5,20,40,80", help="request rates in req/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of load per rate")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per stream")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.log)
        return
    print(f"server: first token {FIRST_MS:g} ms, then one every {GAP_MS:g} ms, {args.tokens} tokens; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (float(x) for x in args.rates.split(",")):
            print(json.dumps(point(rate, args.seconds, args.tokens, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
