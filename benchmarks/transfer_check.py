"""How well does the roofline transfer predict a measured profile? A check on the committed H100 profiles.

The bundled models were profiled on one H100 at float32, float16 and bfloat16
(scenarios/profiles/*-h100*.json, `capsim profile`). This script moves each float32 profile to
half precision with `capsim.servicetime.transfer` (the model cost is the one `capsim profile`
recorded, `model.cost`) and compares the prediction with the half-precision measurement at every
batch size both have: mean and p99 relative errors. Two references run alongside:

- "pure roofline": the same transfer with the fixed overhead forced to 0 (the whole time scales);
- "unchanged": predict that half precision takes what float32 took.

Usage: python benchmarks/transfer_check.py [--profiles scenarios/profiles] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from capsim.hardware import load_catalogue
from capsim.servicetime.profile_format import Profile, read_profile
from capsim.servicetime.transfer import declared_cost, measured_on, transfer_profile

MODELS = ("mlp", "cnn", "transformer")
TARGETS = {"fp16": "fp16", "bf16": "bf16"}


def _p99(profile: Profile, batch_size: int) -> float:
    point = next(p for p in profile.points if p.batch_size == batch_size)
    return float(np.interp(0.99, profile.quantile_levels, point.quantiles_ms))


def _mean(profile: Profile, batch_size: int) -> float:
    return next(p.mean_ms for p in profile.points if p.batch_size == batch_size)


def compare(folder: Path, model: str, precision: str) -> dict[str, Any]:
    """Relative errors (prediction / measurement − 1) of the three predictors at each common batch size."""
    catalogue = load_catalogue()
    fp32 = read_profile(folder / f"{model}-h100.json")
    measured = read_profile(folder / f"{model}-h100-{precision}.json")
    device = measured_on(fp32, catalogue)
    cost = declared_cost(fp32)
    predictors = {
        "transfer": transfer_profile(fp32, device, device, cost, precision, source_precision="fp32"),
        "pure_roofline": transfer_profile(fp32, device, device, cost, precision, source_precision="fp32", overhead_s=0),
        "unchanged": fp32,
    }
    sizes = sorted({p.batch_size for p in fp32.points} & {p.batch_size for p in measured.points})
    rows = []
    for k in sizes:
        row: dict[str, Any] = {"batch_size": k, "measured_mean_ms": _mean(measured, k),
                               "measured_p99_ms": _p99(measured, k)}  # fmt: skip
        for name, predicted in predictors.items():
            row[f"{name}_mean_err"] = _mean(predicted, k) / row["measured_mean_ms"] - 1.0
            row[f"{name}_p99_err"] = _p99(predicted, k) / row["measured_p99_ms"] - 1.0
        rows.append(row)
    overhead_ms = predictors["transfer"].provenance.get("overhead_s", float("nan")) * 1000.0
    return {"model": model, "precision": precision, "device": device.name, "overhead_ms": overhead_ms, "rows": rows}


def _mae(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([abs(r[key]) for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=Path, default=Path(__file__).resolve().parents[1] / "scenarios/profiles")
    parser.add_argument("--json", action="store_true", help="print the per-batch-size rows as JSON")
    args = parser.parse_args()
    results = [compare(args.profiles, m, p) for m in MODELS for p in TARGETS]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("Roofline transfer, H100 float32 profile -> half precision on the same H100, against the measured profile")
    print("mean |relative error| over the batch sizes measured in both (mean / p99 of each batch's time)\n")
    header = (f"{'model':<12}{'to':<6}{'sizes':>6}{'overhead ms':>13}{'transfer':>18}{'pure roofline':>20}"
              f"{'unchanged':>18}")
    print(header)
    print("-" * len(header))
    for r in results:
        rows = r["rows"]
        cells = [f"{_mae(rows, n + '_mean_err'):>7.1%} / {_mae(rows, n + '_p99_err'):>6.1%}"
                 for n in ("transfer", "pure_roofline", "unchanged")]  # fmt: skip
        print(f"{r['model']:<12}{r['precision']:<6}{len(rows):>6}{r['overhead_ms']:>13.3f}"
              f"{cells[0]:>18}{cells[1]:>20}{cells[2]:>18}")


if __name__ == "__main__":
    main()
