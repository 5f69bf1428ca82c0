"""How far apart are two measurements of the same point? The floor under every validation error.

capsim's calibration targets (docs/validation.md: held-out p50 within 5%, p99 within 10%) compare a
prediction with one measurement. A measurement is itself a sample: the same server, settings and
offered load, measured again, gives other percentiles — from the Poisson schedule's own randomness,
from where the OS puts the threads, from whatever else the machine does. No model can predict a
point closer than the point reproduces itself, so this script measures that spread.

For each model and batching setting it starts the reference server `--servers` times (as the study
does: CPU, queue capacity 4096, no NVML), probes its capacity once on the first (the study's 10 s
closed loop), and on every server runs `capsim loadtest --sweep R,R,…` — `--repeats` steps at the
same Poisson rate R (`--load` × capacity, capped at `--max-rate`), each with its own seed. It prints
every step's p50 / p90 / p99 and, per model and setting, the spread: the largest and the median
relative deviation of a step from the median of all steps, within one server and across servers.

    python benchmarks/repeatability.py                                   # ≈ 10 min on 2 vCPUs
    python benchmarks/repeatability.py --models mlp --settings b1-w0 --servers 2 --repeats 3
    python benchmarks/repeatability.py --from-runs benchmarks/data/cpu-repeat   # analyse only

Run folders go under `--out` (default `benchmarks/data/cpu-repeat`); the table is printed as Markdown
and written as JSON (`OUT/repeatability.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation_study import MODELS, REPO, SETTINGS, probe_capacity_rps

from capsim.atomic import atomic_write_json
from reference_server.launch import ServerProcess

PERCENTILES = (50, 90, 99)


def measure(out: Path, models: list[str], settings: list[str], servers: int, repeats: int, load: float,
            max_rate_rps: float, duration_s: float, warmup_s: float) -> None:
    """`servers` fresh servers per (model, setting), `repeats` equal-rate steps on each."""
    try:  # as the study: other work on a shared machine disturbs the measurement less
        os.nice(-10)
    except OSError:
        print("# could not raise the priority (not root): measuring at normal priority", file=sys.stderr)
    for model in models:
        for name in settings:
            batch, wait_ms = SETTINGS[name]
            args = ["--model", model, "--max-batch-size", str(batch), "--max-wait-ms", str(wait_ms), "--device", "cpu",
                    "--no-nvml", "--queue-capacity", "4096"]  # fmt: skip
            rate = 0.0
            for server_index in range(servers):
                run_dir = out / model / name / f"server{server_index}"
                if run_dir.exists():
                    print(f"# {run_dir} exists: kept", file=sys.stderr)
                    continue
                with ServerProcess(args, log_dir=out / "logs" / f"{model}-{name}-server{server_index}") as server:
                    if rate <= 0:
                        capacity = probe_capacity_rps(server.url, model, max(4, 2 * batch),
                                                      out / "probes" / f"{model}-{name}")
                        rate = round(load * min(capacity, max_rate_rps), 1)
                        print(f"# {model} {name}: capacity {capacity:.1f} req/s, rate {rate} req/s", file=sys.stderr)
                    cmd = [sys.executable, "-m", "capsim.cli.main", "loadtest", "--target", server.url, "--model",
                           model, "--arrival", "poisson", "--sweep", ",".join([str(rate)] * repeats), "--duration",
                           str(duration_s), "--warmup", str(warmup_s), "--seed", str(1000 + server_index),
                           "--out", str(run_dir)]  # fmt: skip
                    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                    if done.returncode != 0:
                        print(f"# loadtest failed ({done.returncode}): {done.stderr.strip()[-400:]}", file=sys.stderr)


def step_percentiles(run_dir: Path) -> list[dict[str, Any]]:
    """Per step of one run folder: the measured window's completed requests and their percentiles (the
    loadtest's own summary is the source, so the numbers are those `capsim validate` compares)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = []
    for index, step in enumerate(summary.get("steps") or [summary]):
        latency = step.get("latency_ms") or {}
        rows.append({"step": index, "rate_rps": step.get("offered_rps"), "valid": bool(step.get("valid", True)),
                     "completed": (step.get("requests") or {}).get("completed"),
                     **{f"p{p}_ms": latency.get(f"p{p}") for p in PERCENTILES}})  # fmt: skip
    return rows


def spread(values: list[float]) -> dict[str, float]:
    """Relative deviation of each value from the median of all: the largest and the median one."""
    array = np.asarray(values, dtype=float)
    centre = float(np.median(array))
    deviation = np.abs(array / centre - 1.0)
    return {"median": centre, "max_dev": float(deviation.max()), "median_dev": float(np.median(deviation))}


def analyse(root: Path) -> list[dict[str, Any]]:
    """One row per (model, setting): every step's percentiles and their spread."""
    rows = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in MODELS):
        for setting_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            steps = []
            for run_dir in sorted(setting_dir.glob("server*")):
                if (run_dir / "summary.json").is_file():
                    steps += [{"server": run_dir.name, **s} for s in step_percentiles(run_dir)]
            if len(steps) < 2:
                continue
            frame = pd.DataFrame(steps)
            row: dict[str, Any] = {"model": model_dir.name, "setting": setting_dir.name,
                                   "rate_rps": float(frame.rate_rps.median()), "steps": steps}  # fmt: skip
            for p in PERCENTILES:
                column = f"p{p}_ms"
                row[column] = spread(frame[column].tolist())
                within = [spread(g[column].tolist())["max_dev"] for _, g in frame.groupby("server") if len(g) > 1]
                row[column]["max_dev_within_server"] = max(within) if within else float("nan")
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The spread table: per percentile, the median over steps and the largest / median deviation."""
    head = "| model | setting | req/s | steps | " + " | ".join(
        f"p{p} ms: median, largest dev. (within one server), median dev." for p in PERCENTILES) + " |"
    lines = [head, "|" + "---|" * (4 + len(PERCENTILES))]
    for row in rows:
        cells = [row["model"], row["setting"], f"{row['rate_rps']:.0f}", str(len(row["steps"]))]
        for p in PERCENTILES:
            s = row[f"p{p}_ms"]
            cells.append(f"{s['median']:.3g}: ±{100 * s['max_dev']:.1f}% ({100 * s['max_dev_within_server']:.1f}%), "
                         f"±{100 * s['median_dev']:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "data" / "cpu-repeat")
    parser.add_argument("--from-runs", type=Path, help="analyse run folders under DIR; measure nothing")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--servers", type=int, default=2, help="fresh servers per model and setting")
    parser.add_argument("--repeats", type=int, default=3, help="equal-rate steps per server")
    parser.add_argument("--load", type=float, default=0.5, help="rate as a share of the probed capacity")
    parser.add_argument("--max-rate", type=float, default=300.0, help="cap on the rate (req/s), as in the study")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds per step, warm-up included")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    settings = [s for s in args.settings.split(",") if s]
    unknown = [m for m in models if m not in MODELS] + [s for s in settings if s not in SETTINGS]
    if unknown or args.servers < 1 or args.repeats < 1 or not 0 < args.load <= 1:
        parser.error(f"models of {MODELS}, settings of {tuple(SETTINGS)}, --servers/--repeats ≥ 1, "
                     f"0 < --load ≤ 1 (got {unknown or [args.servers, args.repeats, args.load]})")
    root = args.from_runs or args.out
    if not args.from_runs:
        measure(args.out, models, settings, args.servers, args.repeats, args.load, args.max_rate, args.duration,
                args.warmup)
    rows = analyse(root)
    print(markdown(rows))
    atomic_write_json(root / "repeatability.json", rows)


if __name__ == "__main__":
    main()
