"""Does the reference server's padded batch cost what `size_rule: max` says? Times, on this machine,
batches of the bundled transformer whose requests differ in length (padded to the longest by
`ModelRunner.run`) against uniform batches at that longest length and at the mean length, and
prints the ratios (docs/model.md "Request size"): `max` predicts mixed / uniform-at-max = 1;
`total` predicts mixed / uniform-at-mean = 1.

Run: python benchmarks/size_padding.py [--batch 8] [--repeats 200] (prints figures; asserts nothing).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reference_server.executor import ModelRunner
from reference_server.models import MODELS, load_model


def median_ms(runner: ModelRunner, batches: list[list[np.ndarray]], repeats: int) -> list[float]:
    """Median time (ms) of each batch over `repeats` rounds, after 10 to warm up. The batches take
    turns within each round, so a noisy neighbour on a shared machine slows them alike."""
    for _ in range(10):
        for requests in batches:
            runner.run(requests)
    times = np.zeros((repeats, len(batches)))
    for i in range(repeats):
        for j, requests in enumerate(batches):
            t0 = time.perf_counter()
            runner.run(requests)
            times[i, j] = time.perf_counter() - t0
    return [float(m) * 1e3 for m in np.median(times, axis=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = MODELS["transformer"]
    cpu = torch.device("cpu")
    runner = ModelRunner(spec, load_model("transformer", cpu), cpu)
    k = args.batch
    lengths = [4] * (k - 1) + [32]  # one long request among short ones
    mean = round(sum(lengths) / k)
    mixed = [spec.example_batch(1, seed=i, size=n) for i, n in enumerate(lengths)]
    at_max = [spec.example_batch(1, seed=i, size=32) for i in range(k)]
    at_mean = [spec.example_batch(1, seed=i, size=mean) for i in range(k)]
    t_mixed, t_max, t_mean = median_ms(runner, [mixed, at_max, at_mean], args.repeats)
    print(f"transformer, batch {k}, 1 thread: lengths {lengths}")
    print(f"  mixed (padded to 32): {t_mixed:8.3f} ms")
    print(f"  uniform at 32 (max):  {t_max:8.3f} ms   mixed / max  = {t_mixed / t_max:.3f}")
    print(f"  uniform at {mean:>2} (mean): {t_mean:8.3f} ms   mixed / mean = {t_mixed / t_mean:.3f}")


if __name__ == "__main__":
    main()
