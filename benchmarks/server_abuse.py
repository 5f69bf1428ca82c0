"""The reference server under abuse: huge headers, half-sent requests, ten times its capacity.

Starts `python -m reference_server` (what `capsim serve` runs) on 127.0.0.1 with the MLP on the
CPU, every limit at its default, and prints:

(a) header / request-id cap: the server's RSS before and after 500 requests that each carry a 1 MB
    `X-Request-Id`, and how they were answered;
(b) slowloris: N connections that send half a request (a head a byte every 0.5 s, or a head and one
    byte of a 1000-byte body) — when the server closed them — and normal requests sent meanwhile;
(c) 10x overload: the model's capacity measured closed-loop, then Poisson arrivals open-loop at
    0.5x (baseline), 10x (the burst) and 0.5x again: 429/504 shares, accepted p50/p99 during the
    burst, the time from the burst's end to the last request that was late or refused (recovery),
    RSS before / peak / after. The same run against the previous defaults (no queue timeout, 1024
    waiting) shows what the bound changes.

The model is made slow on purpose (`--extra-latency-ms 20`, the server's test hook: every batch
takes 20 ms longer), so that ten times its capacity is a rate a Python client on the same small
machine can send; unbatched (`--max-batch-size 1`, the default), capacity is ~48 req/s. Latency is
measured from each request's scheduled send time (no coordinated omission). Takes ~2 minutes.

    python benchmarks/server_abuse.py [--burst-s 10] [--slowloris 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_server.launch import ServerProcess

EXTRA_LATENCY_MS = 20.0
COMMON_ARGS = ["--model", "mlp", "--device", "cpu", "--torch-threads", "1", "--no-nvml",
               "--extra-latency-ms", str(EXTRA_LATENCY_MS)]  # fmt: skip
# What the server did before the queue was bounded in time (and enough connections for its backlog).
OLD_DEFAULTS = ["--timeout-ms", "0", "--queue-capacity", "1024", "--max-connections", "4000"]
# "Back to baseline": the first half-second window after the burst in which every request was served
# and the median latency is within 1.5x (+ 2 ms) of the baseline's.
RECOVERY_WINDOW_S = 0.5
LATE_FACTOR = 1.5
SLOWLORIS_WAIT_S = 20.0  # how long a half-sent request is watched for the server to close it
LATE_SLACK_S = 0.002


# -- the server process ------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident set size of `pid` from /proc (no request to the server)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


class RssWatch:
    """Samples a process's RSS every 100 ms in a thread; `.peak_mb` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb = pid, rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError):
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


SERVER_ENV: dict[str, str] | None = None  # --server-code: the environment that runs another checkout's server


@contextlib.contextmanager
def server(extra: list[str], log_dir: Path) -> Iterator[tuple[ServerProcess, int, int]]:
    """A server on a free loopback port: (process, port, pid)."""
    with ServerProcess([*COMMON_ARGS, *extra], log_dir=log_dir, env=SERVER_ENV) as proc:
        assert proc.proc is not None
        yield proc, proc.port, proc.proc.pid


def queue_bounds_line(proc: ServerProcess) -> str:
    match = re.search(r"queue bounds: (.*)", proc.logs())
    return match.group(1) if match else "(not logged)"


# -- HTTP on raw asyncio streams -----------------------------------------------------------------------
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}).encode()
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def infer_request(port: int, extra_headers: bytes = b"") -> bytes:
    head = (f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n").encode()  # fmt: skip
    return head + extra_headers + b"\r\n" + BODY


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    """Send one request, read its response; the status code."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return int(head[9:12])


@dataclass
class Sent:
    """Every request of an open-loop run: scheduled send offset (s), status (-1 = no answer),
    latency from the scheduled time (s)."""

    offset_s: np.ndarray
    status: np.ndarray
    latency_s: np.ndarray


async def open_loop(port: int, phases: list[tuple[float, float]], seed: int = 0) -> Sent:
    """Poisson arrivals through `phases` of (rate req/s, seconds), one after the other, each request
    on an idle keep-alive connection or a new one."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(seed)
    offsets: list[float] = []
    begin = 0.0
    for rate, seconds in phases:
        t = begin + rng.exponential(1 / rate)
        while t < begin + seconds:
            offsets.append(t)
            t += rng.exponential(1 / rate)
        begin += seconds
    n = len(offsets)
    status = np.full(n, -1)
    latency = np.full(n, math.nan)
    payload = infer_request(port)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one(i: int, intended: float) -> None:
        conn = None
        try:
            conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            status[i] = await exchange(*conn, payload)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if conn is not None:
                conn[1].close()
            return
        latency[i] = loop.time() - intended
        idle.append(conn)

    start = loop.time() + 0.05
    tasks = []
    for i, offset in enumerate(offsets):
        intended = start + offset
        if (delay := intended - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, intended)))
    _, pending = await asyncio.wait(tasks, timeout=60.0)
    for task in pending:
        task.cancel()
    for _, writer in idle:
        writer.close()
    return Sent(np.array(offsets), status, latency)


async def closed_loop_rps(port: int, clients: int, seconds: float) -> float:
    """Completed requests per second with `clients` back-to-back senders: the server's capacity."""
    loop = asyncio.get_running_loop()
    payload = infer_request(port)
    done = 0
    end = loop.time() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while loop.time() < end:
            if await exchange(reader, writer, payload) == 200:
                done += 1
        writer.close()

    t0 = loop.time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (loop.time() - t0)


# -- (a) huge request ids ----------------------------------------------------------------------------
def huge_ids(port: int, pid: int, n: int) -> dict[str, object]:
    """`n` requests with a 1 MB X-Request-Id, each on its own connection; how they were answered."""
    request = infer_request(port, b"X-Request-Id: " + b"r" * 1_000_000 + b"\r\n")
    before = rss_mb(pid)
    outcomes: dict[str, int] = {}
    t0 = time.perf_counter()
    with RssWatch(pid) as watch:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                try:
                    sock.sendall(request)
                    answer = sock.recv(4096)
                    key = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
                except (ConnectionResetError, BrokenPipeError):
                    key = "reset before the answer was read"
            outcomes[key] = outcomes.get(key, 0) + 1
    time.sleep(0.5)
    return {"rss_before_mb": before, "rss_peak_mb": watch.peak_mb, "rss_after_mb": rss_mb(pid),
            "outcomes": outcomes, "seconds": time.perf_counter() - t0}  # fmt: skip


# -- (b) slowloris -----------------------------------------------------------------------------------
async def slowloris(port: int, n: int) -> dict[str, object]:
    """`n` half-sent requests (half drip a head, half stall a body) and normal requests meanwhile."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    closed_after_s: list[float] = []
    answers: dict[str, int] = {}

    async def attacker(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"

        async def drip() -> None:  # a head, one byte every 0.5 s, never finished
            for byte in head + b"X-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.5)

        dripping = None
        if i % 2:
            writer.write(head + b"Content-Length: 1000\r\n\r\n{")  # a body never completed
        else:
            dripping = asyncio.create_task(drip())
        try:  # the first bytes (the 408, if it comes), then until the server closes
            data = await asyncio.wait_for(reader.read(4096), timeout=SLOWLORIS_WAIT_S)
            with contextlib.suppress(ConnectionResetError):  # the dripper wrote after the close
                await asyncio.wait_for(reader.read(), timeout=SLOWLORIS_WAIT_S)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            data = b"open"
        closed_after_s.append(loop.time() - t0)
        key = data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"
        if data == b"open":
            key = f"still open after {SLOWLORIS_WAIT_S:.0f} s"
        answers[key] = answers.get(key, 0) + 1
        if dripping is not None:
            dripping.cancel()
        writer.close()

    attackers = [asyncio.create_task(attacker(i)) for i in range(n)]
    await asyncio.sleep(0.2)
    normal = await open_loop(port, [(10.0, 4.0)], seed=7)  # while the attackers hold their connections
    await asyncio.gather(*attackers)
    ok = normal.status == 200
    return {"closed_after_s": closed_after_s, "answers": answers, "normal_sent": len(ok), "normal_ok": int(ok.sum()),
            "normal_p50_ms": float(np.nanpercentile(normal.latency_s[ok], 50) * 1e3) if ok.any() else math.nan,
            "normal_max_ms": float(np.nanmax(normal.latency_s[ok]) * 1e3) if ok.any() else math.nan}  # fmt: skip


# -- (c) overload --------------------------------------------------------------------------------------
@dataclass
class Overload:
    """One baseline / burst / after run."""

    capacity_rps: float
    bounds: str
    baseline_p50_ms: float
    baseline_p99_ms: float
    burst_sent: int
    burst_429: float  # shares of the burst's requests
    burst_504: float
    burst_other: float
    burst_p50_ms: float  # accepted (200) requests sent during the burst
    burst_p99_ms: float
    recovery_s: float  # burst end -> the end of the first window back at baseline (see RECOVERY_WINDOW_S)
    recovered_in_run: bool
    after_p99_ms: float  # accepted requests from 1 s after the burst to the end
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float


def overload(extra: list[str], log_dir: Path, base_s: float, burst_s: float, after_s: float) -> Overload:
    with server(extra, log_dir) as (proc, port, pid):
        capacity = asyncio.run(closed_loop_rps(port, clients=8, seconds=3.0))
        low, high = 0.5 * capacity, 10.0 * capacity
        rss_before = rss_mb(pid)
        with RssWatch(pid) as watch:
            sent = asyncio.run(open_loop(port, [(low, base_s), (high, burst_s), (low, after_s)]))
        time.sleep(0.5)
        rss_after = rss_mb(pid)
        bounds = queue_bounds_line(proc)
    ok = sent.status == 200
    base = (sent.offset_s < base_s) & (sent.offset_s >= 1.0)  # the first second warms connections
    burst = (sent.offset_s >= base_s) & (sent.offset_s < base_s + burst_s)
    baseline_p99 = float(np.percentile(sent.latency_s[base & ok], 99))
    recovery_s = recovery_time_s(sent, base_s + burst_s, after_s, float(np.median(sent.latency_s[base & ok])))
    settled = sent.offset_s >= base_s + burst_s + 1.0
    n_burst = int(burst.sum())
    accepted = sent.latency_s[burst & ok] * 1e3
    return Overload(
        capacity_rps=capacity,
        bounds=bounds,
        baseline_p50_ms=float(np.median(sent.latency_s[base & ok]) * 1e3),
        baseline_p99_ms=baseline_p99 * 1e3,
        burst_sent=n_burst,
        burst_429=float((sent.status[burst] == 429).sum() / n_burst),
        burst_504=float((sent.status[burst] == 504).sum() / n_burst),
        burst_other=float((~np.isin(sent.status[burst], (200, 429, 504))).sum() / n_burst),
        burst_p50_ms=float(np.percentile(accepted, 50)) if len(accepted) else math.nan,
        burst_p99_ms=float(np.percentile(accepted, 99)) if len(accepted) else math.nan,
        recovery_s=recovery_s,
        recovered_in_run=recovery_s < after_s,
        after_p99_ms=float(np.percentile(sent.latency_s[settled & ok], 99) * 1e3) if (settled & ok).any() else math.nan,
        rss_before_mb=rss_before,
        rss_peak_mb=watch.peak_mb,
        rss_after_mb=rss_after,
    )


def recovery_time_s(sent: Sent, burst_end_s: float, after_s: float, baseline_p50_s: float) -> float:
    """From the burst's end to the end of the first `RECOVERY_WINDOW_S` window (of send times) in
    which every request was served and the median latency is back within `LATE_FACTOR` of the
    baseline's median; `after_s` or more when that never happened."""
    limit_s = LATE_FACTOR * baseline_p50_s + LATE_SLACK_S
    start = burst_end_s
    while start + RECOVERY_WINDOW_S <= burst_end_s + after_s:
        window = (sent.offset_s >= start) & (sent.offset_s < start + RECOVERY_WINDOW_S)
        if window.sum() >= 3 and (sent.status[window] == 200).all() and np.median(sent.latency_s[window]) <= limit_s:
            return start + RECOVERY_WINDOW_S - burst_end_s
        start += RECOVERY_WINDOW_S
    return after_s


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"{cpu}, {len(os.sched_getaffinity(0))} vCPUs, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-s", type=float, default=5.0, help="baseline phase at 0.5x capacity")
    parser.add_argument("--burst-s", type=float, default=10.0, help="burst phase at 10x capacity")
    parser.add_argument("--after-s", type=float, default=10.0, help="phase at 0.5x after the burst")
    parser.add_argument("--huge-ids", type=int, default=500, help="requests with a 1 MB X-Request-Id")
    parser.add_argument("--slowloris", type=int, default=200, help="half-sent requests held open at once")
    parser.add_argument("--no-old-defaults", action="store_true", help="skip the run with the previous defaults")
    parser.add_argument("--server-code", type=Path, default=None,
                        help="run the reference_server package in this folder instead (e.g. the code before the "
                        "limits: git archive COMMIT reference_server | tar -x -C DIR); only its defaults")  # fmt: skip
    args = parser.parse_args()
    if args.server_code is not None:
        global SERVER_ENV
        SERVER_ENV = {**os.environ, "PYTHONPATH": str(args.server_code.resolve())}
        os.chdir(args.server_code)  # `python -m` puts the working directory first on the path
        args.no_old_defaults = True
    started = datetime.datetime.now(datetime.UTC)
    code = f"  server code from {args.server_code}" if args.server_code else ""
    print(f"# server_abuse  {started:%Y-%m-%d %H:%M} UTC  {machine()}  load average {os.getloadavg()[0]:.1f}{code}")
    with tempfile.TemporaryDirectory(prefix="server_abuse.") as tmp:
        with server([], Path(tmp) / "ab") as (_, port, pid):
            a = huge_ids(port, pid, args.huge_ids)
            print(f"(a) {args.huge_ids} x 1 MB X-Request-Id in {a['seconds']:.1f} s: {a['outcomes']}; RSS "
                  f"{a['rss_before_mb']:.0f} MB before, {a['rss_peak_mb']:.0f} peak, "
                  f"{a['rss_after_mb']:.0f} after")  # fmt: skip
            b = asyncio.run(slowloris(port, args.slowloris))
            closed = np.array(b["closed_after_s"])
            print(f"(b) {args.slowloris} half-sent requests: answered {b['answers']}, closed after "
                  f"{closed.min():.1f} / {np.median(closed):.1f} / {closed.max():.1f} s (min / median / max); "
                  f"meanwhile {b['normal_ok']}/{b['normal_sent']} normal requests served, p50 "
                  f"{b['normal_p50_ms']:.1f} ms, max {b['normal_max_ms']:.1f} ms")  # fmt: skip
        runs = [("defaults", [])] + ([] if args.no_old_defaults else [("previous defaults", OLD_DEFAULTS)])
        for label, extra in runs:
            c = overload(extra, Path(tmp) / label.replace(" ", "_"), args.base_s, args.burst_s, args.after_s)
            recovery = f"{c.recovery_s:.1f} s" if c.recovered_in_run else f">= {c.recovery_s:.0f} s (not in the run)"
            print(f"(c) {label}: capacity {c.capacity_rps:.1f} req/s; queue bounds {c.bounds}\n"
                  f"    baseline (0.5x) p50 {c.baseline_p50_ms:.1f} ms, p99 {c.baseline_p99_ms:.1f} ms; "
                  f"burst (10x, {c.burst_sent} requests): "
                  f"429 {c.burst_429:.1%}, 504 {c.burst_504:.1%}, other {c.burst_other:.1%}, accepted p50 "
                  f"{c.burst_p50_ms:.1f} ms, p99 {c.burst_p99_ms:.1f} ms; recovery {recovery} (p99 from 1 s after: "
                  f"{c.after_p99_ms:.1f} ms); RSS "
                  f"{c.rss_before_mb:.0f} / {c.rss_peak_mb:.0f} / {c.rss_after_mb:.0f} MB (before / peak / after)",
                  flush=True)  # fmt: skip
    elapsed = datetime.datetime.now(datetime.UTC) - started
    print(f"# done in {elapsed.total_seconds():.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
