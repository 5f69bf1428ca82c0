"""What dynamic batching buys on the bundled CNN, and what the server costs per request.

Prints, for the CNN on this machine's CPU:
- the highest Poisson request rate each configuration sustains with p99 <= 100 ms and no errors,
  with batching (max batch 32, greedy) and without (max batch 1), one executor each;
- the server's own overhead per request: p50 latency at low load minus the model's batch-1 compute
  time (measured directly by the profiler), and the p50 of (latency - the server's X-Compute-Ms).

The client is an open-loop generator on the standard library's asyncio: requests are sent at
their scheduled times whatever the server is doing, and latency is measured from the scheduled
time (no coordinated omission), over keep-alive HTTP/1.1 connections opened as needed. It runs on
the same machine as the server and shares its cores, as a sidecar load generator would.

    python benchmarks/server_batching.py [--trial-s 6] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_server.launch import ServerProcess

SLO_P99_MS = 100.0
MODEL = "cnn"


@dataclass
class Trial:
    """One open-loop run at a fixed offered rate."""

    rate_rps: float
    sent: int
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    achieved_rps: float
    overhead_p50_ms: float  # p50 of latency - X-Compute-Ms

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.ok == self.sent and self.p99_ms <= SLO_P99_MS


def request_bytes(port: int) -> bytes:
    """One v2 inference request for one CNN image, serialized once."""
    data = np.random.default_rng(0).standard_normal(3 * 32 * 32).round(4).tolist()
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": data}]}
    ).encode()
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
_COMPUTE = re.compile(rb"x-compute-ms:\s*([0-9.]+)", re.IGNORECASE)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> tuple[int, float]:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = _CONTENT_LENGTH.search(head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    compute = _COMPUTE.search(head)
    return status, float(compute.group(1)) if compute else math.nan


async def open_loop(port: int, rate_rps: float, duration_s: float, warmup_s: float, seed: int) -> Trial:
    """Poisson arrivals at `rate_rps` for `duration_s`; statistics skip the first `warmup_s`."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_rps, size=int(rate_rps * duration_s * 1.5) + 100)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < duration_s]
    n = len(offsets)
    latency = np.full(n, np.nan)
    compute = np.full(n, np.nan)
    status = np.zeros(n, dtype=int)
    done_at = np.full(n, np.nan)
    payload = request_bytes(port)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one(i: int, intended: float) -> None:
        conn = None
        try:
            conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            status[i], compute[i] = await _exchange(*conn, payload)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status[i] = -1
            if conn is not None:
                conn[1].close()
            return
        now = loop.time()
        latency[i] = now - intended
        done_at[i] = now
        idle.append(conn)

    start = loop.time() + 0.05
    tasks = []
    for i, offset in enumerate(offsets):
        intended = start + offset
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, intended)))
    _, pending = await asyncio.wait(tasks, timeout=15.0)
    for task in pending:
        task.cancel()
    for _, writer in idle:
        writer.close()
    measured = offsets >= warmup_s
    ok = measured & (status == 200)
    lat_ms = latency[ok] * 1e3
    span = np.nanmax(done_at[ok]) - (start + warmup_s) if ok.any() else math.nan
    return Trial(
        rate_rps=rate_rps,
        sent=int(measured.sum()),
        ok=int(ok.sum()),
        errors=int((measured & (status != 200)).sum()),
        p50_ms=float(np.percentile(lat_ms, 50)) if ok.any() else math.inf,
        p99_ms=float(np.percentile(lat_ms, 99)) if ok.any() else math.inf,
        achieved_rps=float(ok.sum() / span) if span and span > 0 else 0.0,
        overhead_p50_ms=float(np.nanpercentile(lat_ms - compute[ok], 50)) if ok.any() else math.nan,
    )


def wait_idle(url: str, timeout_s: float = 120.0) -> None:
    """Wait until the server's queue is empty and no executor is busy (after an overloaded trial)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        depth = re.search(r"^refserver_queue_depth\{[^}]*\} (\S+)", text, re.M)
        busy = re.search(r"^refserver_executors_busy\{[^}]*\} (\S+)", text, re.M)
        if depth and busy and float(depth.group(1)) == 0 and float(busy.group(1)) == 0:
            return
        time.sleep(0.5)


class RateSearch:
    """Highest rate that passes: grow by 1.5x until a failure, then bisect `steps` times. A failing
    rate is tried `tries` times (a shared machine's hiccup should not decide the answer), the same
    for every configuration."""

    def __init__(self, label: str, start_rps: float, steps: int, tries: int = 2) -> None:
        self.label, self.steps, self.tries = label, steps, tries
        self.rate = start_rps
        self.low, self.high = 0.0, math.inf
        self.best: Trial | None = None
        self.bisections = 0
        self.failures_at_rate = 0

    @property
    def done(self) -> bool:
        return self.high < math.inf and self.bisections >= self.steps

    def record(self, trial: Trial) -> None:
        """Fold in a trial at `self.rate` and choose the next rate."""
        if not trial.passed:
            self.failures_at_rate += 1
            if self.failures_at_rate < self.tries:
                return  # try the same rate again
        self.failures_at_rate = 0
        bracketed = self.high < math.inf  # a failure was already seen: this trial was a bisection
        if trial.passed:
            self.best, self.low = trial, trial.rate_rps
        else:
            self.high = trial.rate_rps
        if bracketed:
            self.bisections += 1
        self.rate = self.low * 1.5 if self.high == math.inf else (self.low + self.high) / 2


def attempt(url: str, port: int, rate: float, trial_s: float, seed: int, label: str) -> Trial:
    """One trial after the server has drained whatever the previous one left."""
    wait_idle(url)
    trial = asyncio.run(open_loop(port, rate, trial_s, warmup_s=1.0, seed=seed))
    verdict = "ok  " if trial.passed else "FAIL"
    print(
        f"  {label:<9} {verdict} {rate:7.1f} rps offered: achieved {trial.achieved_rps:7.1f}, "
        f"p50 {trial.p50_ms:7.2f} ms, p99 {trial.p99_ms:8.2f} ms, errors {trial.errors}",
        flush=True,
    )
    return trial


def low_load_latency_ms(port: int, n: int = 150, mean_gap_s: float = 0.1) -> tuple[float, float, float]:
    """p50 latency, p50 of the server's X-Compute-Ms and p50 of (latency - X-Compute-Ms) for requests
    sent one at a time with random gaps (about 10 req/s), from a plain blocking socket: the client
    adds as little as it can."""
    payload = request_bytes(port)
    rng = np.random.default_rng(7)
    latency, compute, overhead = [], [], []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            time.sleep(rng.exponential(mean_gap_s))
            t0 = time.perf_counter()
            sock.sendall(payload)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = int(_CONTENT_LENGTH.search(head).group(1))  # type: ignore[union-attr]
            while len(rest) < length:
                rest += sock.recv(65536)
            elapsed_ms = (time.perf_counter() - t0) * 1e3
            compute_ms = float(_COMPUTE.search(head).group(1))  # type: ignore[union-attr]
            latency.append(elapsed_ms)
            compute.append(compute_ms)
            overhead.append(elapsed_ms - compute_ms)
    return float(np.median(latency)), float(np.median(compute)), float(np.median(overhead))


def batch1_compute_ms(tmp: Path) -> float:
    """The model's batch-1 time, measured directly (no HTTP) by the profiler."""
    out = tmp / "cnn-b1.json"
    subprocess.run(
        [sys.executable, "-m", "reference_server.profile", "--model", MODEL, "--device", "cpu",
         "--batch-sizes", "1", "-o", str(out), "--window-s", "1", "--warmup-s", "1"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    profile = json.loads(out.read_text())
    levels = profile["quantile_levels"]
    return float(profile["points"][0]["quantiles_ms"][levels.index(0.5)])


def mean_batch_size(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    total = float(re.search(r"^refserver_batch_size_sum\{[^}]*\} (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"^refserver_batch_size_count\{[^}]*\} (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    return total / count if count else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trial-s", type=float, default=6.0, help="seconds per load point")
    parser.add_argument("--steps", type=int, default=4, help="bisection steps after the first failure")
    parser.add_argument("--quick", action="store_true", help="short trials, fewer steps (smoke run)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="batching window of the max-batch-32 config")
    parser.add_argument("--torch-threads", type=int, default=0, help="per executor (0 = server default)")
    args = parser.parse_args()
    if args.quick:
        args.trial_s, args.steps = 3.0, 2
    load_before = _loadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"batch-1 compute of the {MODEL} (profiler, no HTTP)...", flush=True)
        b1_ms = batch1_compute_ms(tmp)
        common = ["--model", MODEL, "--device", "cpu", "--instances", "1", "--queue-capacity", "100000",
                  "--torch-threads", str(args.torch_threads)]  # fmt: skip
        batched_flags = ["--max-batch-size", "32", "--max-wait-ms", str(args.max_wait_ms)]
        # Both servers stay up and the two searches take turns, so that a shared machine's load
        # (which comes and goes) falls on both configurations alike; an idle server costs nothing.
        with (
            ServerProcess([*common, "--max-batch-size", "1"], log_dir=tmp / "b1") as single,
            ServerProcess([*common, *batched_flags], log_dir=tmp / "b32") as batching,
        ):
            print("low-load latency (max batch 1, ~10 req/s, one at a time)...", flush=True)
            low_p50_ms, low_compute_ms, low_overhead_ms = low_load_latency_ms(single.port)
            searches = [(RateSearch("batch 1", 40.0, args.steps), single),
                        (RateSearch("batch 32", 80.0, args.steps), batching)]  # fmt: skip
            seed = 0
            while not all(search.done for search, _ in searches):
                for search, server in searches:
                    if not search.done:
                        seed += 1
                        search.record(attempt(server.url, server.port, search.rate, args.trial_s, seed, search.label))
            mean_b = mean_batch_size(batching.url)
        no_batch, batched = searches[0][0].best, searches[1][0].best
        if no_batch is None or batched is None:
            raise SystemExit("a configuration met the target at no rate tried")
        print()
        print(f"CNN on this CPU, p99 <= {SLO_P99_MS:.0f} ms, one executor, Poisson open-loop arrivals, "
              f"{args.trial_s:g} s per point:")  # fmt: skip
        print(f"  (batching window {args.max_wait_ms:g} ms; load average before {load_before}, after {_loadavg()})")
        print(f"  without batching (max batch 1): {no_batch.rate_rps:7.1f} rps  (p99 {no_batch.p99_ms:.1f} ms)")
        print(
            f"  with batching (max batch 32):   {batched.rate_rps:7.1f} rps  (p99 {batched.p99_ms:.1f} ms, "
            f"mean batch over the search {mean_b:.1f})"
        )
        print(f"  batching / no batching:         {batched.rate_rps / no_batch.rate_rps:7.2f}x  (target >= 3x)")
        print("Server overhead per request at low load (~10 req/s, one at a time, max batch 1):")
        print(f"  p50 latency {low_p50_ms:.2f} ms - p50 batch-1 compute {low_compute_ms:.2f} ms (X-Compute-Ms, same"
              f" requests) = {low_p50_ms - low_compute_ms:.2f} ms  (target <= 2 ms)")  # fmt: skip
        print(f"  p50 of per-request (latency - X-Compute-Ms) = {low_overhead_ms:.2f} ms")
        print(f"  (profiler's batch-1 median, no HTTP, measured just before: {b1_ms:.2f} ms)")


def _loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


if __name__ == "__main__":
    main()
