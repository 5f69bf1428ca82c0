"""How fast capsim simulates, against baselines measured in the same run.

(a) M/M/c with c = 8, rho = 0.8, 1M requests: capsim vs Ciw vs a plain one-process-per-request
    SimPy model. Targets: >= 5x Ciw and >= 3x plain SimPy (simulated requests per wall second).
(b) A real-time scenario with batching (max batch 32), 4 replicas, least_outstanding, one simulated
    hour at 1,000 requests/s. Target: under 10 s wall time.

Every measurement is repeated (--repeat, default 3) and the fastest run reported, the same for capsim
and the baselines: on a shared machine the minimum is the least disturbed estimate. Wall time and the
process's CPU time are both printed (ratios in both): on a shared machine CPU time is the steadier one.

capsim runs its one real-time data plane, the compiled event loop under the SimPy control plane
(the SimPy data plane it replaced, 2.3-2.8x plain SimPy here, is gone: docs/model.md).

Run: python benchmarks/simulate_speed.py [--requests N] [--repeat R]   (prints figures; asserts nothing)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import simpy

from capsim import simulate
from capsim.scenario import validate_scenario

C = 8
MEAN_SERVICE_S = 1.0
RHO = 0.8
RATE_RPS = RHO * C / MEAN_SERVICE_S


def mmc_scenario(requests: int) -> dict:
    duration_s = requests / RATE_RPS
    return {
        "name": "bench-mmc",
        "duration_s": duration_s,
        "warmup_s": duration_s / 10,
        "seed": 1,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": RATE_RPS}},
        "service": {"kind": "exponential", "mean_ms": MEAN_SERVICE_S * 1000},
        "hardware": {"name": "cpu", "usd_per_hour": 0.1},
        "serving": {"mode": "realtime", "replicas": 1, "instances_per_replica": C},
    }


Run = tuple[float, float, int, float]
"""(wall_s, cpu_s, requests simulated, mean queue wait in seconds)"""


def run_capsim(requests: int, keep_requests: bool) -> Run:
    scenario = validate_scenario(mmc_scenario(requests), "bench")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(scenario, keep_requests=keep_requests)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    arrived = result.summary["requests"]["arrived"] / 0.9  # warm-up requests are simulated too
    return wall, cpu, int(arrived), result.summary["queue_wait_ms"]["mean"] / 1000.0


def run_plain_simpy(requests: int) -> Run:
    """The textbook SimPy model: one process per customer, a Resource with capacity c."""
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=C)
    rng = np.random.default_rng(1)
    waits: list[float] = []

    def customer(env: simpy.Environment) -> object:
        arrived = env.now
        with servers.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(rng.exponential(MEAN_SERVICE_S))

    def source(env: simpy.Environment) -> object:
        for _ in range(requests):
            yield env.timeout(rng.exponential(1 / RATE_RPS))
            env.process(customer(env))

    env.process(source(env))
    start, cpu_start = time.perf_counter(), time.process_time()
    env.run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return wall, cpu, requests, float(np.mean(waits[requests // 10 :]))


def run_ciw(requests: int) -> Run:
    import ciw

    ciw.seed(1)
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=RATE_RPS)],
        service_distributions=[ciw.dists.Exponential(rate=1 / MEAN_SERVICE_S)],
        number_of_servers=[C],
    )
    sim = ciw.Simulation(network)
    horizon = requests / RATE_RPS
    start, cpu_start = time.perf_counter(), time.process_time()
    sim.simulate_until_max_time(horizon)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    recs = sim.get_all_records()
    waits = [r.waiting_time for r in recs if r.arrival_date > horizon / 10]
    return wall, cpu, len(recs), float(np.mean(waits))


def erlang_c_wait_s() -> float:
    a = RATE_RPS * MEAN_SERVICE_S
    b = 1.0
    for k in range(1, C + 1):
        b = a * b / (k + a * b)
    c_prob = b / (1 - RHO * (1 - b))
    return c_prob / (C / MEAN_SERVICE_S - RATE_RPS)


def batching_scenario() -> dict:
    return {
        "name": "bench-batching",
        "duration_s": 3600,
        "warmup_s": 60,
        "seed": 1,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": 1000}},
        "service": {"kind": "linear", "base_ms": 8, "per_item_ms": 0.9, "cv": 0.1},
        "hardware": {"name": "gpu", "usd_per_hour": 1.0},
        "serving": {
            "mode": "realtime",
            "replicas": 4,
            "instances_per_replica": 1,
            "batching": {"max_batch_size": 32, "max_wait_ms": 5},
            "load_balancer": "least_outstanding",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--baseline-requests", type=int, default=None,
                        help="requests for the baselines (default: the same as --requests)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest is reported")
    args = parser.parse_args()
    baseline_requests = args.baseline_requests or args.requests

    def fastest(fn: Callable[[int], Run], n: int) -> tuple[float, float, int, float]:
        """The least wall time and the least CPU time over the repeats (each its own minimum)."""
        runs = [fn(n) for _ in range(args.repeat)]
        best = min(runs, key=lambda run: run[0])
        return best[0], min(run[1] for run in runs), best[2], best[3]

    print(f"(a) M/M/{C}, rho = {RHO}; Erlang C mean wait = {erlang_c_wait_s() * 1000:.1f} ms")
    rows = []
    capsim_runs: list[tuple[str, bool]] = [("request log", True), ("--no-request-log", False)]
    simulate(validate_scenario(mmc_scenario(1000), "warm"))  # load (or compile) numba first
    measured = [(f"capsim {label}", lambda n, k=keep: run_capsim(n, k), args.requests)
                for label, keep in capsim_runs]  # fmt: skip
    measured += [
        ("plain SimPy, process per request", run_plain_simpy, baseline_requests),
        ("Ciw", run_ciw, baseline_requests),
    ]
    for label, fn, n in measured:
        wall, cpu, count, wait_s = fastest(fn, n)
        rows.append((count / wall, count / cpu))
        print(f"  {label:40s} {count / wall:>10,.0f} req/s   ({count:,} requests in {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU; mean wait {wait_s * 1000:.1f} ms)")  # fmt: skip
    simpy_rates, ciw_rates = rows[len(capsim_runs)], rows[len(capsim_runs) + 1]
    for (label, _), (wall_rate, cpu_rate) in zip(capsim_runs, rows, strict=False):
        print(f"  capsim {label}: {wall_rate / simpy_rates[0]:.2f}x plain SimPy (CPU time: "
              f"{cpu_rate / simpy_rates[1]:.2f}x; target >= 3x), {wall_rate / ciw_rates[0]:.2f}x Ciw "
              f"(CPU time: {cpu_rate / ciw_rates[1]:.2f}x; target >= 5x)")  # fmt: skip

    scenario = validate_scenario(batching_scenario(), "bench")
    walls, cpus = [], []
    for _ in range(args.repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = simulate(scenario, keep_requests=False)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    s = result.summary
    print(f"(b) batching, 4 replicas, least_outstanding, 1 h at 1,000 req/s: {min(walls):.2f} s "
          f"wall, {min(cpus):.2f} s CPU (target < 10 s); {s['requests']['arrived']:,} requests, "
          f"mean batch {s['batch_size']['mean']:.1f}, p99 {s['latency_ms']['p99']:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
