"""How batch times run slow together in recorded run folders, and what else the stalls hold.

For each load point of the reference server's runs under DIR (per executor, in start order), prints:

- the autocorrelation of the batch times' normal scores (rank within point and batch size) at lags
  1, 2, 3, 5, 10, 20 — what `capsim calibrate --batch-correlation` fits;
- the fitted `service.correlation` of that point alone (latent form: lag1, decay);
- tail clustering: P(next batch above the q-quantile | this one is), q = 0.90, 0.95, 0.99 (0.10,
  0.05, 0.01 for independent batches), measured and as the fitted copula draws it;
- dispatch gaps: for a batch whose oldest request was already queued when the previous batch ended,
  its start minus that end (the simulator starts it at once; with a batching window this includes
  the window's wait, so the figure means dispatch delay only for greedy batching, w0);
- stalls: spells of at least `STALL_BATCHES` consecutive batches each taking (busy time plus the gap
  before the next one) at least `STALL_FACTOR` × the point's median batch time: how many, how long
  (ms, median) and how slow (median of the spell's mean cycle over the median batch time);
- the worst queue wait and, over the interval it waited, the executor's busy share and the summed
  dispatch gaps (how much of the wait the batch times can explain at all), and the median time
  outside the server (client latency − X-Queue-Ms − X-Compute-Ms: the front end) of the requests
  sent from 60 ms before it began until it ended, against the whole point's median.

    python benchmarks/batch_runs_analysis.py benchmarks/data/cpu-run3

Seconds per model; measures nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from capsim.calibration.correlation_fit import fit_acf, normal_score_sequences, pooled_acf
from capsim.calibration.runfolder import LoadPoint, read_run_folder
from capsim.calibration.whitebox import batches_inside, outside_server_ms
from capsim.servicetime.correlation import BatchCorrelation

LAGS = (1, 2, 3, 5, 10, 20)
TAILS = (0.90, 0.95, 0.99)
STALL_BATCHES = 8
STALL_FACTOR = 2.0


def _stalls(start: np.ndarray, end: np.ndarray, queued: np.ndarray) -> dict[str, float | int | None]:
    busy = end - start
    # Busy time plus, when the next batch was already queued, the gap until it started (idle time
    # with nothing to do is not slowness).
    cycle = busy + np.r_[np.where(queued, np.maximum(start[1:] - end[:-1], 0.0), 0.0), 0.0]
    slow = cycle >= STALL_FACTOR * np.median(busy)
    spells = []
    i = 0
    while i < slow.size:
        if slow[i]:
            j = i
            while j < slow.size and slow[j]:
                j += 1
            if j - i >= STALL_BATCHES:
                spells.append((float(end[j - 1] - start[i]), float(np.mean(cycle[i:j]) / np.median(busy))))
            i = j
        else:
            i += 1
    return {"count": len(spells),
            "duration_ms": round(1000 * float(np.median([d for d, _ in spells])), 1) if spells else None,
            "slowdown": round(float(np.median([f for _, f in spells])), 2) if spells else None}


def _tail_clustering(u: np.ndarray) -> list[float]:
    return [float(np.mean((u[1:] >= q)[u[:-1] >= q])) for q in TAILS]


def analyse_point(point: LoadPoint) -> dict[str, object] | None:
    """The figures above for one load point (None without a batch log)."""
    inside = batches_inside(point)
    if inside is None or len(inside) < 100:
        return None
    sequences = normal_score_sequences(point)
    acf, pairs = pooled_acf(sequences)
    lag1, decay = fit_acf(acf, "latent")
    out: dict[str, object] = {"point": point.label, "server": point.server.key() if point.server else None,
                              "batches": len(inside), "pairs": pairs,
                              "acf": {lag: round(float(acf[lag - 1]), 3) for lag in LAGS},
                              "latent": {"lag1": round(lag1, 3), "decay": round(decay, 3)}}  # fmt: skip
    ordered = inside.sort_values("start_s")
    busy_s = (ordered["end_s"] - ordered["start_s"]).to_numpy(dtype=float)
    u = (busy_s.argsort().argsort() + 0.5) / busy_s.size
    out["tail_measured"] = [round(x, 3) for x in _tail_clustering(u)]
    if lag1 > 0:
        draws = BatchCorrelation(lag1=lag1, decay=max(decay, lag1)).uniforms(np.random.default_rng(0))
        out["tail_copula"] = [round(x, 3) for x in _tail_clustering(np.array([next(draws) for _ in range(200_000)]))]
    if "arrival_s" in ordered.columns:
        start = ordered["start_s"].to_numpy(dtype=float)
        end = ordered["end_s"].to_numpy(dtype=float)
        oldest = np.array([min(a) if len(a) else np.nan for a in ordered["arrival_s"]], dtype=float)
        queued = oldest[1:] < end[:-1]
        gap_ms = (start[1:] - end[:-1])[queued] * 1000.0
        out["dispatch_gap"] = {"share": round(float(queued.mean()), 3),
                               "mean_ms": round(float(gap_ms.mean()), 3) if gap_ms.size else None,
                               "p99_ms": round(float(np.percentile(gap_ms, 99)), 3) if gap_ms.size else None}
        wait_s = start - oldest
        worst = int(np.nanargmax(wait_s))
        lo, hi = oldest[worst], start[worst]
        before = (start < hi) & (end > lo)
        busy = float(np.sum(np.minimum(end[before], hi) - np.maximum(start[before], lo)))
        inner = np.flatnonzero((start[1:] > lo) & (start[1:] <= hi) & queued) + 1
        gaps = float(np.sum(start[inner] - end[inner - 1]))
        out["stalls"] = _stalls(start, end, queued)
        out["worst_wait"] = {"wait_ms": round(1000 * (hi - lo), 1), "busy_share": round(busy / (hi - lo), 3),
                             "dispatch_gaps_ms": round(1000 * gaps, 1)}  # fmt: skip
        rows = point.requests
        if {"server_queue_ms", "server_compute_ms"} <= set(rows.columns):
            ok = point.measured_mask() & (rows["status"].to_numpy() // 100 == 2)
            sent_s = rows["sent_s"].to_numpy(dtype=float)[ok]
            outside = (rows["latency_ms"] - rows["server_queue_ms"] - rows["server_compute_ms"]).to_numpy(
                dtype=float)[ok]
            during = (sent_s >= lo - 0.06) & (sent_s <= hi) & np.isfinite(outside)
            if during.any():
                out["worst_wait"]["outside_server_p50_ms"] = round(float(np.median(outside[during])), 2)
                out["worst_wait"]["outside_server_p50_ms_all"] = round(float(np.median(outside_server_ms(point))), 2)
    return out


def main() -> None:
    """Print one JSON line per load point of every run folder under DIR."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a folder holding run folders (searched recursively)")
    args = parser.parse_args()
    for manifest in sorted(args.root.rglob("manifest.json")):
        settings = json.loads(manifest.read_text()).get("settings") or {}
        if settings.get("closed_loop") or settings.get("locustfile"):
            continue  # capacity probes: closed loop, not the studied loads
        for point in read_run_folder(manifest.parent):
            row = analyse_point(point)
            if row is not None:
                print(json.dumps({"run": str(manifest.parent.relative_to(args.root)), **row}))


if __name__ == "__main__":
    main()
