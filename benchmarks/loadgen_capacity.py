"""How fast can one load-generator process go? Prints, in one run against the same trivial loopback
endpoint:

1. capsim's open loop (one Locust worker process) at a ladder of rates: sent rate, send lag, late
   share and worker CPU; the highest rate with a p99 send lag under 1 ms and under 1% of sends more
   than 1 ms late is the figure; beside it, how late plain `time.sleep` wakes up on this machine
   (the operating system's floor: no user-space generator can be more punctual than that);
2. plain Locust, FastHttpUser, closed loop (users with no think time), one process: requests/s;
3. wrk (if installed), one thread: requests/s.

The endpoint is a minimal asyncio HTTP/1.1 server in its own process, answering `{}` to anything.
Usage: python benchmarks/loadgen_capacity.py [--seconds 6] [--rates 500,1000,2000] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
LAG_P99_LIMIT_MS = 1.0
LATE_SHARE_LIMIT = 0.01


class _Trivial(asyncio.Protocol):
    """Answers every complete HTTP request (headers + Content-Length body) with `{}`; keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


def serve(port: int) -> None:
    """Run the trivial endpoint on 127.0.0.1:port until killed."""
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_endpoint() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- capsim open loop


def open_loop_point(url: str, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """One capsim open-loop run at `rate` with one worker process; returns the figures that matter."""
    from capsim.loadtest.runner import run_loadtest
    from capsim.loadtest.settings import LoadTestSettings, build_arrival

    body = workdir / "body.json"
    body.write_text('{"inputs": [1, 2, 3, 4]}')
    out = Path(tempfile.mkdtemp(dir=workdir, prefix=f"open-{rate:g}-"))
    out.rmdir()
    settings = LoadTestSettings(
        target=f"{url}/infer", protocol="generic", payload_path=str(body),
        arrival=build_arrival("poisson", rate, seconds), duration_s=seconds, warmup_s=1.0, window_s=1.0,
        workers=1, max_in_flight=500, scrape_interval_s=5.0,
    )
    s = run_loadtest(settings, out, echo=lambda _t: None)
    lag = s["send_lag_ms"]
    ok = (lag["p99"] or 0.0) < LAG_P99_LIMIT_MS and lag["late_share"] < LATE_SHARE_LIMIT and s["valid"]
    cpu = s["generator"]["cpu_percent_mean"] or s["generator"]["cpu_percent_max"]
    return {"rate_rps": rate, "achieved_rps": s["achieved_rps"], "throughput_rps": s["throughput_rps"],
            "lag_p50_ms": lag["p50"], "lag_p99_ms": lag["p99"], "late_share": lag["late_share"],
            "cpu_percent": cpu, "cpu_us_per_request": round(cpu / 100.0 / rate * 1e6, 1),
            "sustained": ok}


def open_loop_ladder(url: str, rates: list[float], seconds: float, workdir: Path) -> dict[str, Any]:
    """One run per rate; the highest rate meeting the lag criterion is the figure."""
    points = []
    for rate in rates:
        point = open_loop_point(url, rate, seconds, workdir)
        points.append(point)
        print(f"  open loop {rate:6.0f} req/s: sent {point['achieved_rps']:8.1f}/s, "
              f"lag p50 {point['lag_p50_ms']} ms, "
              f"p99 {point['lag_p99_ms']} ms, late {point['late_share']:.2%}, worker CPU {point['cpu_percent']}% "
              f"({point['cpu_us_per_request']} µs/request) -> {'ok' if point['sustained'] else 'too late'}", flush=True)
    good = [p["rate_rps"] for p in points if p["sustained"]]
    return {"max_sustained_rps": max(good) if good else None, "points": points}


def sleep_floor(samples: int = 400) -> dict[str, float]:
    """How late plain `time.sleep` wakes up on this machine right now: the OS's own floor, which no
    generator in user space can beat (on a busy machine the kernel runs other processes first)."""
    late_ms = []
    for i in range(samples):
        want_s = 0.0003 + (i % 10) * 0.0007
        begin = time.perf_counter()
        time.sleep(want_s)
        late_ms.append((time.perf_counter() - begin - want_s) * 1000.0)
    late_ms.sort()
    return {"p50_ms": round(late_ms[samples // 2], 3), "p99_ms": round(late_ms[int(samples * 0.99)], 3),
            "late_share": round(sum(x > 1.0 for x in late_ms) / samples, 4)}


# ---------------------------------------------------------------- plain Locust, closed loop

LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Plain(FastHttpUser):
    wait_time = constant(0)

    @task
    def infer(self):
        self.client.post("/infer", data='{"inputs": [1, 2, 3, 4]}', headers={"Content-Type": "application/json"})
"""


def plain_locust(url: str, seconds: float, users: int, workdir: Path) -> dict[str, Any]:
    """Plain Locust, one process, FastHttpUser closed loop with no think time."""
    path = workdir / "plain_locustfile.py"
    path.write_text(LOCUSTFILE)
    stats = workdir / "plain_stats.json"
    cmd = [sys.executable, "-m", "locust", "-f", str(path), "--headless", "--host", url, "-u", str(users),
           "-r", str(users), "--run-time", f"{int(seconds)}s", "--json-file", str(stats.with_suffix("")),
           "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    subprocess.run(cmd, capture_output=True, timeout=seconds + 60, check=False)
    entries = json.loads(stats.read_text())
    total = sum(e["num_requests"] for e in entries)
    span = max(e["last_request_timestamp"] for e in entries) - min(e["start_time"] for e in entries)
    return {"users": users, "requests": total, "rps": round(total / span, 1) if span > 0 else None}


def wrk(url: str, seconds: float) -> dict[str, Any]:
    """wrk with one thread and 10 connections (closed loop, C); skipped when not installed."""
    exe = shutil.which("wrk")
    if exe is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    done = subprocess.run([exe, "-t1", "-c10", f"-d{int(seconds)}s", f"{url}/infer"], capture_output=True,
                          text=True, timeout=seconds + 30, check=False)
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    return {"threads": 1, "connections": 10, "rps": float(match.group(1)) if match else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measurement")
    parser.add_argument("--rates", default="500,1000,2000,3000,4000", help="open-loop rates to run, req/s")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    endpoint, url = start_endpoint()
    try:
        with tempfile.TemporaryDirectory(prefix="capsim-loadgen-") as tmp:
            workdir = Path(tmp)
            load_before = os.getloadavg()
            print(f"trivial endpoint {url} (pid {endpoint.pid}); {os.cpu_count()} CPUs; load average "
                  f"{load_before[0]:.2f} (other work on the machine delays the generator's wake-ups)", flush=True)
            floor = sleep_floor()
            print(f"  time.sleep wake-up lateness on this machine: p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms, "
                  f"{floor['late_share']:.1%} more than 1 ms late", flush=True)
            rates = [float(r) for r in args.rates.split(",")]
            result: dict[str, Any] = {"sleep_floor": floor,
                                      "open_loop": open_loop_ladder(url, rates, args.seconds, workdir)}
            result["plain_locust_fasthttp_closed"] = plain_locust(url, args.seconds, 10, workdir)
            result["wrk"] = wrk(url, args.seconds)
            result["machine"] = {"cpus": os.cpu_count(), "load_average_before": load_before[0],
                                 "load_average_after": os.getloadavg()[0]}
    finally:
        endpoint.send_signal(signal.SIGTERM)
        endpoint.wait(timeout=10)
    cap = result["open_loop"]["max_sustained_rps"]
    print()
    best_cpu = min((p["cpu_us_per_request"] for p in result["open_loop"]["points"] if p["cpu_us_per_request"] > 0),
                   default=None)
    print(f"capsim open loop, 1 worker process : {'none of the rates' if cap is None else round(cap)} "
          f"scheduled req/s with p99 send lag < {LAG_P99_LIMIT_MS:g} ms and < {LATE_SHARE_LIMIT:.0%} late sends")
    if best_cpu:
        print(f"  worker CPU per request           : {best_cpu} µs (one core would schedule "
              f"~{round(1e6 / best_cpu)} req/s)")
    fl = result["sleep_floor"]
    print(f"  OS floor (time.sleep)            : {fl['late_share']:.1%} of wake-ups > 1 ms late, p99 {fl['p99_ms']} ms")
    print(f"plain Locust FastHttpUser, closed  : {result['plain_locust_fasthttp_closed']['rps']} req/s "
          f"(1 process, 10 users, no think time)")
    w = result["wrk"]
    print(f"wrk                                : {w.get('rps', w.get('skipped'))}"
          f"{' req/s (1 thread, 10 connections)' if 'rps' in w else ''}")
    m = result["machine"]
    print(f"machine                            : {m['cpus']} CPUs, load average {m['load_average_before']:.2f} "
          f"before, {m['load_average_after']:.2f} after")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
