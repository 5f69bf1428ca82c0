"""What running fleets as stages of a graph costs: the same fleet simulated as a plain real-time run
and as a one-stage graph (the lock-step's overhead: feeding, harvesting and routing every second of
simulated time), and the bundled three-stage search pipeline against its three stages run alone.

Run: python benchmarks/graph_speed.py [--repeat N] (CPU seconds, the fastest of N runs, and the
ratios; asserts nothing). Runs use --no-request-log (histograms) unless --request-log.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from capsim import Scenario, load_scenario, simulate
from capsim.serving.graph.spec import GraphServing, stage_scenario

ROOT = Path(__file__).resolve().parents[1]


def cpu_s(scenario: Scenario, repeat: int, keep: bool) -> float:
    """The fastest of `repeat` runs, in CPU seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        simulate(scenario, keep_requests=keep)
        best = min(best, time.process_time() - start)
    return best


def as_graph(scenario: Scenario) -> Scenario:
    """The real-time scenario as a graph of one stage."""
    graph = GraphServing.model_validate({"mode": "graph", "entry": "only", "stages": {"only": {
        "serving": scenario.serving.model_dump(exclude_defaults=True)}}})  # fmt: skip
    return scenario.model_copy(update={"serving": graph})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--request-log", action="store_true")
    args = parser.parse_args()
    keep = args.request_log
    plain = load_scenario(ROOT / "scenarios" / "recsys-ranker-gpu.yaml", ["duration_s=600", "warmup_s=30"])
    plain_s, graph_s = cpu_s(plain, args.repeat, keep), cpu_s(as_graph(plain), args.repeat, keep)
    print(f"recsys-ranker-gpu 10 min: real-time {plain_s:.2f} s, as a one-stage graph {graph_s:.2f} s "
          f"(x{graph_s / plain_s:.2f})")  # fmt: skip
    search = load_scenario(ROOT / "scenarios" / "search-pipeline-chain.yaml")
    assert isinstance(search.serving, GraphServing)
    alone = sum(cpu_s(stage_scenario(search, name), args.repeat, keep) for name in search.serving.stages)
    chain_s = cpu_s(search, args.repeat, keep)
    print(f"search-pipeline-chain 30 min: the graph {chain_s:.2f} s, its three stages run alone {alone:.2f} s "
          f"(x{chain_s / alone:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
