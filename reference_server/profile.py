"""`python -m reference_server.profile`: measure a bundled model's batch latency and write a capsim
profile (the file `service: {kind: profile, path: ...}` loads).

For each batch size: warm up, then time batches in windows of about `--window-s` seconds until the
medians of the last three windows agree within `--tolerance` (max/min − 1; 5% by default), or
`--max-windows` windows have run. The median, not the mean, is compared because on a shared or
virtualised machine a single descheduling can move a window's mean by more than 5% while the
typical batch has not changed; the recorded distribution keeps those outliers all the same. The
profile holds every batch timed in the last three windows, and the provenance keeps every window's
median and whether each batch size converged.

A batch is timed exactly as the server's executors run it (`ModelRunner.run`): `b` one-item request
arrays are concatenated, run, and the output split back per request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference_server.config import DEVICES, DTYPE_NAMES, MODEL_NAMES
from reference_server.executor import ModelRunner, torch_threads_per_instance
from reference_server.hardware import describe
from reference_server.model_cost import model_cost
from reference_server.models import (
    DEFAULT_SEED,
    DTYPES,
    MODELS,
    OneDnnModule,
    load_model,
    parameter_count,
    resolve_device,
)

CONVERGENCE_WINDOWS = 3


@dataclass
class SizeResult:
    """What was measured at one batch size."""

    batch_size: int
    samples_ms: np.ndarray
    window_medians_ms: list[float] = field(default_factory=list)
    converged: bool = False
    spread: float = math.inf  # max/min - 1 over the last three window medians
    size: int | None = None  # every request's size (`--sizes`), None without a size axis

    @property
    def key(self) -> str:
        """The result's name in the provenance: its batch size, with its request size."""
        return str(self.batch_size) if self.size is None else f"size {self.size} batch {self.batch_size}"


def parse_batch_sizes(text: str) -> list[int]:
    """ "1,2,4" → [1, 2, 4] (sorted, unique, each >= 1)."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return sizes


def spread(values: list[float]) -> float:
    """max/min − 1 (∞ when the minimum is not positive)."""
    low = min(values)
    return max(values) / low - 1 if low > 0 else math.inf


def measure_size(
    runner: ModelRunner,
    batch_size: int,
    *,
    window_s: float,
    warmup_s: float,
    tolerance: float,
    max_windows: int,
    seed: int,
    size: int | None = None,
) -> SizeResult:
    """Warm up, then time windows until the last three medians agree (see the module docstring);
    with `size`, every request of the batch has that size (the model's size knob)."""
    spec = runner.spec
    requests = list(spec.example_batch(batch_size, seed=seed, size=size)[:, np.newaxis])

    def timed() -> float:
        t0 = time.perf_counter()
        runner.run(requests)
        return (time.perf_counter() - t0) * 1e3

    warm = [timed() for _ in range(3)]
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        warm.append(timed())
    # Batches per window, from the warm-up's typical time (median: robust to the first calls).
    per_batch_ms = float(np.median(warm[-max(3, len(warm) // 2) :]))
    per_window = max(5, math.ceil(window_s * 1e3 / max(per_batch_ms, 1e-3)))
    windows: list[np.ndarray] = []
    result = SizeResult(batch_size, np.empty(0), size=size)
    while len(windows) < max_windows:
        window = np.array([timed() for _ in range(per_window)])
        windows.append(window)
        result.window_medians_ms.append(float(np.median(window)))
        if len(windows) >= CONVERGENCE_WINDOWS:
            result.spread = spread(result.window_medians_ms[-CONVERGENCE_WINDOWS:])
            if result.spread <= tolerance:
                result.converged = True
                break
    result.samples_ms = np.concatenate(windows[-CONVERGENCE_WINDOWS:])
    return result


def build_parser() -> argparse.ArgumentParser:
    """The profiler's flags (`capsim profile` passes them through)."""
    p = argparse.ArgumentParser(prog="python -m reference_server.profile", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=MODEL_NAMES, required=True)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="precision of weights and activations")
    p.add_argument("--batch-sizes", type=parse_batch_sizes, default=parse_batch_sizes("1,2,4,8,16,32"))
    p.add_argument("--sizes", type=parse_batch_sizes, default=None,
                   help="request sizes to measure at every batch size (a size axis; models with a size knob)")
    p.add_argument("-o", "--output", type=Path, required=True, help="profile file to write")
    p.add_argument("--window-s", type=float, default=1.0, help="length of one timing window")
    p.add_argument("--warmup-s", type=float, default=1.0, help="warm-up per batch size")
    p.add_argument("--tolerance", type=float, default=0.05, help="max/min - 1 of 3 window medians")
    p.add_argument("--max-windows", type=int, default=20, help="give up converging after this many")
    p.add_argument("--torch-threads", type=int, default=0, help="intra-op threads (0 = server default, 1 executor)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the model weights")
    return p


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Range checks argparse cannot express."""
    if not args.window_s > 0:
        parser.error("--window-s must be > 0")
    if not args.warmup_s >= 0:
        parser.error("--warmup-s must be >= 0")
    if not 0 < args.tolerance < 1:
        parser.error("--tolerance must be in (0, 1)")
    if args.max_windows < CONVERGENCE_WINDOWS:
        parser.error(f"--max-windows must be >= {CONVERGENCE_WINDOWS}")
    if args.torch_threads < 0:
        parser.error("--torch-threads must be >= 0")
    spec = MODELS[args.model]
    if args.sizes is not None and (spec.max_size is None or args.sizes[-1] > spec.max_size):
        knob = f"sizes 1..{spec.max_size} {spec.size_unit}" if spec.max_size else "no size knob"
        parser.error(f"--sizes: model {args.model} has {knob}")


def run(args: argparse.Namespace) -> list[SizeResult]:
    """Measure every batch size and write the profile; returns the per-size results."""
    from capsim.servicetime.profile_format import Profile

    device = resolve_device(args.device)
    threads = torch_threads_per_instance(1, args.torch_threads or None)
    torch.set_num_threads(threads)
    spec = MODELS[args.model]
    load_at_start = _loadavg()
    model = load_model(args.model, device, seed=args.seed, dtype=args.dtype)
    runner = ModelRunner(spec, model, device, DTYPES[args.dtype])
    results = []
    for request_size in args.sizes or [None]:
        for batch_size in args.batch_sizes:
            result = measure_size(
                runner,
                batch_size,
                window_s=args.window_s,
                warmup_s=args.warmup_s,
                tolerance=args.tolerance,
                max_windows=args.max_windows,
                seed=batch_size,
                size=request_size,
            )
            results.append(result)
            print(_row(result), flush=True)
    hardware = describe(device.type, threads, device.index or 0)
    samples: dict[Any, np.ndarray] = {
        (r.batch_size if r.size is None else (float(r.size), r.batch_size)): r.samples_ms for r in results
    }
    profile = Profile.from_samples(
        samples,
        size_unit=spec.size_unit if args.sizes else None,
        model={
            "name": spec.name,
            "description": spec.description,
            "input_shape": list(spec.input_shape),
            "input_datatype": spec.input_datatype,
            "parameters": parameter_count(model),
            "layout": "onednn-blocked" if isinstance(model, OneDnnModule) else "dense",
            "seed": args.seed,
            "cost": model_cost(spec.name),  # what `service.transfer` needs to move this profile
        },
        hardware=hardware,
        framework=framework_record(device, args.dtype, threads),
        created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source="capsim profile",
        provenance={**_provenance(args, results), "loadavg_start": load_at_start, "loadavg_end": _loadavg()},
    )
    profile.write(args.output)
    unconverged = [r.key for r in results if not r.converged]
    note = f"; NOT converged at batch sizes {unconverged}" if unconverged else ""
    print(f"wrote {args.output} ({spec.name} {args.dtype} on {hardware['device_name']}, {threads} threads){note}")
    return results


def framework_record(device: torch.device, dtype: str, threads: int) -> dict[str, Any]:
    """torch's version and the settings that change a batch's time: precision, device, threads and,
    on CUDA, the CUDA/cuDNN versions and whether float32 matrix products may use TF32."""
    record: dict[str, Any] = {
        "name": "torch",
        "version": torch.__version__,
        "dtype": dtype,
        "device": str(device),
        "threads": threads,
    }
    if device.type == "cuda":
        record.update(
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        )
    return record


def _row(r: SizeResult) -> str:
    q = np.percentile(r.samples_ms, [50, 99])
    status = "converged" if r.converged else "NOT converged"
    return (
        f"{'' if r.size is None else f'size {r.size:>4} '}batch {r.batch_size:>4}: "
        f"median {q[0]:9.3f} ms  p99 {q[1]:9.3f} ms  "
        f"n={len(r.samples_ms):>6}  windows={len(r.window_medians_ms):>2}  "
        f"spread={r.spread * 100:5.2f}%  {status}"
    )


def _provenance(args: argparse.Namespace, results: list[SizeResult]) -> dict[str, Any]:
    return {
        "method": "timed batches in windows until the medians of the last 3 windows agree "
        "within the tolerance; samples are the batches of those 3 windows",
        "window_s": args.window_s,
        "warmup_s": args.warmup_s,
        "tolerance": args.tolerance,
        "max_windows": args.max_windows,
        "windows": {
            r.key: {
                "medians_ms": [round(m, 5) for m in r.window_medians_ms],
                "converged": r.converged,
                "spread": None if math.isinf(r.spread) else round(r.spread, 5),
            }
            for r in results
        },
        "command": "python -m reference_server.profile " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: whether the machine was shared while measuring."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 even when some size did not converge (it is reported)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(args, parser)
    try:
        run(args)
    except ValueError as exc:  # e.g. --device cuda without CUDA
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
