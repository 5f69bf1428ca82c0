"""The calibration study: measure the reference server, calibrate on some load points, predict the rest.

For each bundled model (mlp, cnn, transformer) and two batching settings (no batching: max batch 1;
batching: max batch 16 with a 2 ms window), the reference server runs on this machine's CPU and
`capsim loadtest` sweeps four open-loop Poisson loads (30/50/70/90% of an estimated capacity). Then,
per model:

* white box, held out by load: `capsim calibrate --holdout alternate` fits the profile on the 30% and
  70% points of each setting (from the server's batch log) and predicts the 50% and 90% points;
* white box, held out by configuration: fit on the batching setting only, predict the unbatched one;
* black box, held out by load: the same split, fitted from client latencies alone.

Capacity is measured just before each sweep: the completions per second of a 10 s closed loop with
enough users to keep batches full (2 × max batch, at least 4), capped at `--max-rate` (on a small
shared machine the HTTP path and the load generator, not the model, limit the small models). The
measuring processes run at nice −10 so that other work on a shared machine disturbs them less.
Utilization in the tables is *measured* (executor busy time from the batch log), so the ≤ 80% rule
of the targets applies to what the server really did.

    python benchmarks/validation_study.py                      # measure (≈ 15 min) + analyse
    python benchmarks/validation_study.py --from-runs DIR      # analyse run folders recorded earlier
    python benchmarks/validation_study.py --models cnn --duration 15 --out /tmp/study

Prints Markdown tables (pasted into docs/validation.md) and writes the rows as JSON (OUT/study.json,
or `--json PATH`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capsim.atomic import atomic_write_json
from capsim.calibration import calibrate
from capsim.calibration.accuracy import TARGETS, UTILIZATION_LIMIT
from capsim.calibration.runfolder import read_run_folder
from capsim.calibration.whitebox import batch_service_samples_ms, overhead_estimate, window_lateness_ms
from capsim.errors import CapsimInputError
from reference_server.launch import ServerProcess

REPO = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn", "transformer")
SETTINGS = {"b1-w0": (1, 0.0), "b16-w2": (16, 2.0)}  # folder name: (max batch size, max wait ms)
LOADS = (0.3, 0.5, 0.7, 0.9)


def probe_capacity_rps(url: str, model: str, users: int, out: Path) -> float:
    """What the server sustains right now: completions per second of a short closed loop with enough
    users to keep its batches full (measured, not taken from a profile: on a shared machine the
    model's speed depends on what else runs)."""
    cmd = [sys.executable, "-m", "capsim.cli.main", "loadtest", "--target", url, "--model", model, "--closed-loop",
           "--users", str(users), "--duration", "10", "--warmup", "3", "--out", str(out), "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"capacity probe failed: {done.stderr.strip()[-300:]}")
    return float(json.loads(done.stdout)["throughput_rps"])


def measure(out: Path, models: list[str], duration_s: float, warmup_s: float, max_rate_rps: float) -> None:
    """One server per (model, setting): a closed-loop capacity probe, then one sweep of the four loads."""
    try:  # children inherit it: other work on a shared machine then disturbs the measurement less
        os.nice(-10)
    except OSError:
        print("# could not raise the priority (not root): measuring at normal priority", file=sys.stderr)
    for model in models:
        for name, (batch, wait_ms) in SETTINGS.items():
            run_dir = out / model / name
            if run_dir.exists():
                print(f"# {run_dir} exists: kept", file=sys.stderr)
                continue
            args = ["--model", model, "--max-batch-size", str(batch), "--max-wait-ms", str(wait_ms), "--device", "cpu",
                    "--no-nvml", "--queue-capacity", "4096"]  # fmt: skip
            with ServerProcess(args, log_dir=out / "logs" / f"{model}-{name}") as server:
                capacity = probe_capacity_rps(server.url, model, max(4, 2 * batch), out / "probes" / f"{model}-{name}")
                rates = [round(f * min(capacity, max_rate_rps), 1) for f in LOADS]
                print(f"# {model} {name}: capacity {capacity:.1f} req/s (closed loop), rates {rates} req/s",
                      file=sys.stderr)
                cmd = [sys.executable, "-m", "capsim.cli.main", "loadtest", "--target", server.url, "--model", model,
                       "--arrival", "poisson", "--sweep", ",".join(map(str, rates)), "--duration", str(duration_s),
                       "--warmup", str(warmup_s), "--out", str(run_dir)]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if done.returncode != 0:
                    print(f"# loadtest failed ({done.returncode}): {done.stderr.strip()[-400:]}", file=sys.stderr)


def discover(root: Path) -> dict[str, list[Path]]:
    """Run folders under `root` (any depth), grouped by the model their manifest names."""
    by_model: dict[str, list[Path]] = {}
    for manifest in sorted(root.rglob("manifest.json")):
        if not (manifest.parent / "requests.parquet").is_file():
            continue
        data = json.loads(manifest.read_text())
        settings = data.get("settings") or {}
        if settings.get("closed_loop") or settings.get("locustfile"):
            continue  # capacity probes: no schedule to replay
        model = (data.get("target") or {}).get("model") or "unknown"
        by_model.setdefault(model, []).append(manifest.parent)
    return by_model


def _brief(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A fitted spec for the progress line: long quantile lists (the late window's 1001) as a count."""
    if spec is None:
        return None
    return {k: f"{len(v)} quantiles" if isinstance(v, list) and len(v) > 8 else v for k, v in spec.items()}


def _row(model: str, study: str, role: str, row: dict[str, Any]) -> dict[str, Any]:
    m, s, e = row["measured"], row["simulated"], row["relative_error"]
    return {"model": model, "study": study, "role": role, "point": row["label"], "server": row["server"],
            "rate_rps": row["rate_rps"], "utilization": row["utilization"], "valid": row["valid"],
            "throughput_rps": [m["throughput_rps"], s["throughput_rps"], e["throughput_rps"]],
            "p50_ms": [m["latency_ms"]["p50"], s["latency_ms"]["p50"], e["latency_ms.p50"]],
            "p99_ms": [m["latency_ms"]["p99"], s["latency_ms"]["p99"], e["latency_ms.p99"]]}  # fmt: skip


FRONTEND_SUFFIX = " + front end"
LATENESS_SUFFIX = " + front end + late window"


def analyse(
    by_model: dict[str, list[Path]], black_box_evaluations: int, frontend: str = "both",
    window_lateness: bool = False,
) -> list[dict[str, Any]]:
    """Calibrate and predict per model; one row per (study, point). White-box studies run with the
    fitted front end (`serving.frontend`, study name ending in " + front end"), with the constant
    overhead only, or both (`frontend`: on, off, both); with `window_lateness` also with the front
    end and its late batching timer (" + front end + late window")."""
    rows: list[dict[str, Any]] = []
    for model, run_dirs in sorted(by_model.items()):
        white: list[tuple[str, dict[str, Any]]] = [
            ("white box, held out by load", {"method": "white-box", "holdout": "alternate"})]
        # Held out by configuration: fit on the others, predict the one without batching window
        # (max batch 1, or the greedy one): the smallest key.
        configs = sorted({p.server.key() for d in run_dirs for p in read_run_folder(d) if p.server is not None},
                         key=lambda k: (int(k.split("-")[0][1:]), k))
        if len(configs) > 1:
            white.append(("white box, held out by configuration",
                          {"method": "white-box", "holdout": f"server:{configs[0]}"}))
        studies: list[tuple[str, dict[str, Any]]] = []
        for name, options in white:
            if frontend in ("off", "both"):
                studies.append((name, {**options, "mechanisms": ()}))
            if frontend in ("on", "both"):
                studies.append((name.replace(",", FRONTEND_SUFFIX + ",", 1), {**options, "mechanisms": ("frontend",)}))
            if window_lateness:
                studies.append((name.replace(",", LATENESS_SUFFIX + ",", 1),
                                {**options, "mechanisms": ("frontend", "window_late")}))
        if black_box_evaluations > 0:
            studies.append(("black box, held out by load", {"method": "black-box", "holdout": "alternate",
                                                            "max_evaluations": black_box_evaluations}))
        for study, options in studies:
            started = time.monotonic()
            try:
                result = calibrate(run_dirs, **options)
            except CapsimInputError as exc:
                print(f"# {model} / {study}: {exc}", file=sys.stderr)
                continue
            print(f"# {model} / {study}: {time.monotonic() - started:.0f} s, overhead {result.overhead_ms:.2f} ms, "
                  f"front end {_brief(result.frontend)}, "
                  f"fit detail {json.dumps(result.profile.provenance['calibration']['fit_detail'])[:300]}",
                  file=sys.stderr)
            rows += [_row(model, study, "fit", r) for r in result.fit_rows]
            rows += [_row(model, study, "holdout", r) for r in result.holdout_rows]
    return rows


def diagnostics(by_model: dict[str, list[Path]]) -> list[dict[str, Any]]:
    """Per load point, what the simulator's model leaves out: the spread of the per-request time
    outside the server (the replay adds its median as a constant), the batch-of-one service time (a
    profile pools it over all loads), how late the batching window closed, and the machine's load."""
    import numpy as np

    out = []
    for model, run_dirs in sorted(by_model.items()):
        for run_dir in run_dirs:
            summary = json.loads((run_dir / "summary.json").read_text())
            steps = {int(s.get("step", 0)): s for s in (summary.get("steps") or [summary])}
            for point in read_run_folder(run_dir):
                row: dict[str, Any] = {"model": model, "point": point.label, "rate_rps": point.rate_rps}
                machine = (steps.get(point.step, {}).get("generator") or {}).get("machine") or {}
                row["load_average"] = machine.get("load_average_max")
                try:
                    outside = overhead_estimate([point])
                    rows = point.requests[point.measured_mask() & (point.requests["status"] // 100 == 2)]
                    extra = (rows["latency_ms"] - rows["server_queue_ms"] - rows["server_compute_ms"]).to_numpy()
                    row["overhead_p50_ms"], row["overhead_p99_ms"] = outside.median_ms, float(np.percentile(extra, 99))
                    single = batch_service_samples_ms([point]).get(1)
                    row["batch1_p50_ms"] = float(np.median(single)) if single is not None and single.size else None
                    row["window_late"] = window_lateness_ms([point])
                except CapsimInputError:
                    pass  # not the reference server: nothing to look inside
                out.append(row)
    return out


def diagnostics_markdown(rows: list[dict[str, Any]]) -> str:
    """The diagnostics table."""
    lines = ["| model | point | load avg | outside-server p50 / p99 ms | batch-of-1 p50 ms "
             "| window late p50 / p90 ms |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        late = r.get("window_late") or {}
        lines.append(f"| {r['model']} | {r['point']} | {_num(r.get('load_average'))} | "
                     f"{_num(r.get('overhead_p50_ms'))} / {_num(r.get('overhead_p99_ms'))} | "
                     f"{_num(r.get('batch1_p50_ms'))} | {_num(late.get('median_ms'))} / {_num(late.get('p90_ms'))} |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The per-point table and the verdict table."""
    lines = ["| model | study | role | point | util. | req/s meas → sim | err | p50 ms meas → sim | err | "
             "p99 ms meas → sim | err |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, p50, p99 = r["throughput_rps"], r["p50_ms"], r["p99_ms"]
        point = r["point"] + ("" if r["valid"] else " ⚠")
        lines.append(f"| {r['model']} | {r['study']} | {r['role']} | {point} | {_num(r['utilization'])} | "
                     f"{_num(t[0])} → {_num(t[1])} | {_pct(t[2])} | {_num(p50[0])} → {_num(p50[1])} | {_pct(p50[2])} | "
                     f"{_num(p99[0])} → {_num(p99[1])} | {_pct(p99[2])} |")
    lines += ["", f"Held-out points at ≤ {UTILIZATION_LIMIT:.0%} measured utilization, worst |error| "
              f"(targets: throughput {TARGETS['throughput_rps']:.0%}, p50 {TARGETS['latency_ms.p50']:.0%}, "
              f"p99 {TARGETS['latency_ms.p99']:.0%}):", "",
              "| model | study | points | throughput | p50 | p99 |", "|---|---|---|---|---|---|"]
    groups = sorted({(r["model"], r["study"]) for r in rows})
    for model, study in groups:
        held = [r for r in rows if (r["model"], r["study"]) == (model, study) and r["role"] == "holdout"
                and r["utilization"] is not None and r["utilization"] <= UTILIZATION_LIMIT]  # fmt: skip
        cells = []
        for key, limit in (("throughput_rps", TARGETS["throughput_rps"]), ("p50_ms", TARGETS["latency_ms.p50"]),
                           ("p99_ms", TARGETS["latency_ms.p99"])):
            errors = [abs(r[key][2]) for r in held if r[key][2] is not None]
            worst = max(errors) if errors else None
            cells.append("–" if worst is None else f"{100 * worst:.1f}% {'✓' if worst <= limit else '✗'}")
        lines.append(f"| {model} | {study} | {len(held)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _worst_held(rows: list[dict[str, Any]], model: str, study: str, key: str) -> tuple[float | None, int]:
    held = [r for r in rows if (r["model"], r["study"], r["role"]) == (model, study, "holdout")
            and r["utilization"] is not None and r["utilization"] <= UTILIZATION_LIMIT]  # fmt: skip
    errors = [abs(r[key][2]) for r in held if r[key][2] is not None]
    return (max(errors) if errors else None), len(held)


def _comparison_markdown(
    rows: list[dict[str, Any]], before_suffix: str, after_suffix: str, before_label: str, after_label: str
) -> str:
    """Two white-box studies' worst held-out errors side by side, per model and split (the study
    names' suffixes; empty unless both ran)."""
    lines = [f"| model | held out by | points | throughput: {before_label} → {after_label} | "
             f"p50: {before_label} → {after_label} | p99: {before_label} → {after_label} |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    limits = {"throughput_rps": TARGETS["throughput_rps"], "p50_ms": TARGETS["latency_ms.p50"],
              "p99_ms": TARGETS["latency_ms.p99"]}  # fmt: skip

    def cell(value: float | None, key: str) -> str:
        return "–" if value is None else f"{100 * value:.1f}% {'✓' if value <= limits[key] else '✗'}"

    for model in sorted({r["model"] for r in rows}):
        for split in ("load", "configuration"):
            cells, points = [], 0
            for key in limits:
                before, points = _worst_held(rows, model, f"white box{before_suffix}, held out by {split}", key)
                after, after_points = _worst_held(rows, model, f"white box{after_suffix}, held out by {split}", key)
                points = min(points, after_points)
                cells.append(f"{cell(before, key)} → {cell(after, key)}")
            if points:
                lines.append(f"| {model} | {split} | {points} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def frontend_markdown(rows: list[dict[str, Any]]) -> str:
    """The white-box verdicts side by side: constant overhead → fitted front end (empty unless both ran)."""
    return _comparison_markdown(rows, "", FRONTEND_SUFFIX, "constant", "front end")


def added_markdown(rows: list[dict[str, Any]], suffix: str = LATENESS_SUFFIX, what: str = "late window",
                   base: str = FRONTEND_SUFFIX, base_what: str = "front end") -> str:
    """The white-box verdicts of the `base` study (the front end), without → with a mechanism added
    to it (the study name's `suffix`; empty unless both ran)."""
    return _comparison_markdown(rows, base, suffix, base_what, f"+ {what}")


def main() -> None:
    """Measure (unless --from-runs), analyse, print Markdown, write study.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "data" / "cpu", help="run folders go here")
    parser.add_argument("--from-runs", type=Path, default=None, help="analyse run folders under DIR; measure nothing")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load step, warm-up included")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--max-rate", type=float, default=300.0,
                        help="cap on the offered load (req/s): what the HTTP path sustains on a small shared machine")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the rows here (default: OUT/study.json when measuring, nothing with --from-runs)")
    parser.add_argument("--black-box-evaluations", type=int, default=100, help="replays per black-box fit (0: skip)")
    parser.add_argument("--frontend", choices=("on", "off", "both"), default="both",
                        help="white box: replay with the fitted front end (serving.frontend), without it, or both")
    parser.add_argument("--window-lateness", action="store_true",
                        help="white box: also fit and replay the batching timer's lateness "
                             "(serving.frontend.window_late_quantiles_ms)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    root = args.from_runs or args.out
    if args.from_runs is None:
        measure(args.out, models, args.duration, args.warmup, args.max_rate)
    by_model = {m: dirs for m, dirs in discover(root).items() if args.from_runs is not None or m in models}
    if not by_model:
        sys.exit(f"no run folders under {root}")
    rows = analyse(by_model, args.black_box_evaluations, args.frontend, args.window_lateness)
    notes = diagnostics(by_model)
    json_path = args.json or (None if args.from_runs else args.out / "study.json")
    if json_path is not None:
        atomic_write_json(json_path, {"runs": str(root), "rows": rows, "diagnostics": notes, "targets": TARGETS,
                                      "utilization_limit": UTILIZATION_LIMIT,
                                      "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(markdown(rows))
    print()
    side_by_side = frontend_markdown(rows)
    if side_by_side:
        print(side_by_side)
        print()
    added = added_markdown(rows)
    if added:
        print(added)
        print()
    print(diagnostics_markdown(notes))


if __name__ == "__main__":
    main()
