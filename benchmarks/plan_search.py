"""Does `capsim plan`'s search find what an exhaustive evaluation finds, for less simulation?

The space: the bundled CNN classifier (scenarios/measured-cnn-h100.yaml, its H100 profile moved to
each candidate by roofline: `service.transfer`) on T4, L4 and A10G, batching windows 0, 2 and 5 ms,
and 2..24 replicas, at 15,000 req/s with a p99 < 10 ms SLO. Both runs apply the same rules
(headroom, confidence, redundancy; capsim/plan/rules.py) with the same seed:

- the search: galloping + bisection per (hardware, window) line, cheapest lower bound first, lines
  pruned once their lower bound exceeds the pick (capsim/plan/search.py);
- exhaustive: every count of every line, each to the same confidence (what a sweep of the grid
  would run, judged by the same rule).

It prints both picks, the replications and requests each simulated, and the ratio. The search must
pick the same configuration with at least 5x fewer requests (issue 17); the exit code is 1 if not.
Both run in this process, one after the other, without a cache. About a minute on 2 cores.

2026-12-08, shared 2-core VM (other jobs running): the search and the exhaustive evaluation both
pick 3 x A10G with a 0 ms window (3.018 USD/h); the search ran 81 replications (18.2M requests,
4.8 s), the exhaustive one 696 (156.7M requests, 48.5 s): 8.6x fewer requests. At 6,000 req/s
(the pick at the 2-replica floor, 2 x A10G): 57 vs 648 replications, 11.4x fewer requests.

Usage: python benchmarks/plan_search.py [--rate-rps 15000] [--duration-s 20] [--max-replicas 24] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from capsim.plan.cache import ResultCache
from capsim.plan.rules import SafetyRules
from capsim.plan.run import PlanRequest, run_plan

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "measured-cnn-h100.yaml"
HARDWARE = ("T4", "L4", "A10G")
WINDOWS_MS = (0.0, 2.0, 5.0)


def _pick(document: dict[str, Any]) -> str:
    pick = document["levels"][0]["pick"]
    if pick is None:
        return "none"
    window = f"window {pick['max_wait_ms']:g} ms"
    return f"{pick['replicas']} x {pick['hardware']}, {window}, {pick['cost_usd_per_h']:.3f} USD/h"


def _run(args: argparse.Namespace, exhaustive: bool) -> tuple[dict[str, Any], float]:
    overrides = ["service.transfer={}", f"workload.arrival.rate_rps={args.rate_rps}",
                 f"duration_s={args.duration_s}", "warmup_s=5", "slo.latency_ms=10"]  # fmt: skip
    request = PlanRequest(scenario_path=SCENARIO, overrides=overrides, hardware=HARDWARE, max_wait_ms=WINDOWS_MS,
                          max_replicas=args.max_replicas, rules=SafetyRules(), exhaustive=exhaustive)  # fmt: skip
    start = time.perf_counter()
    document = run_plan(request, ResultCache()).document
    return document, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-rps", type=float, default=15000.0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--max-replicas", type=int, default=24)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    searched, search_s = _run(args, exhaustive=False)
    exhaustive, exhaustive_s = _run(args, exhaustive=True)
    same = searched["levels"][0]["pick"] == exhaustive["levels"][0]["pick"] or (
        _pick(searched) == _pick(exhaustive))  # fmt: skip
    ratio = exhaustive["requests_simulated"] / max(1, searched["requests_simulated"])
    figures = {
        "space_size": searched["space"]["size"],
        "search": {"pick": _pick(searched), "replications": searched["simulations"],
                   "requests": searched["requests_simulated"], "wall_s": round(search_s, 1)},
        "exhaustive": {"pick": _pick(exhaustive), "replications": exhaustive["simulations"],
                       "requests": exhaustive["requests_simulated"], "wall_s": round(exhaustive_s, 1)},
        "same_pick": same,
        "requests_ratio": round(ratio, 2),
    }  # fmt: skip
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        windows = ", ".join(f"{w:g}" for w in WINDOWS_MS)
        print(f"space: {', '.join(HARDWARE)} x windows {windows} ms x 2..{args.max_replicas} replicas"
              f" ({figures['space_size']} configurations), {args.rate_rps:g} req/s, p99 < 10 ms")  # fmt: skip
        for name in ("search", "exhaustive"):
            f = figures[name]
            print(f"{name:>10}: {f['pick']}; {f['replications']} replications, {f['requests']:,} requests, "
                  f"{f['wall_s']} s")  # fmt: skip
        print(f"same pick: {same}; the search simulated {ratio:.1f}x fewer requests")
    return 0 if same and ratio >= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
