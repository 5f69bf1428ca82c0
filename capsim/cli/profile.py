"""`capsim profile`: measure a bundled model's batch latency and write a service-time profile.

Runs `python -m reference_server.profile` as a subprocess (capsim never imports torch): warm-up,
then timed batches per batch size until three consecutive windows agree within the tolerance (with
a cap on windows, reported), recording hardware, torch version, dtype, device and date. `--sizes`
measures every batch size at each request size too (a model with a size knob): the profile then has
a size axis (docs/model.md "Request size").
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from capsim.cli.app import app
from capsim.cli.serve import (
    DEVICES,
    DTYPE_NAMES,
    MODEL_NAMES,
    require_choice,
    require_server_dependencies,
    run_subprocess,
)
from capsim.errors import CapsimInputError

SIZE_KNOBS: dict[str, tuple[str, int]] = {"transformer": ("tokens", 32)}
"""The bundled models with a request-size knob: its unit and largest size (reference_server.models'
`size_unit` and `max_size`, which a test keeps equal to these; capsim never imports torch)."""


def parse_batch_sizes(text: str, flag: str = "--batch-sizes") -> list[int]:
    """ "1,2,4,8" → [1, 2, 4, 8]; a one-line input error naming `flag` otherwise."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise CapsimInputError(f"expected comma-separated integers, got {text!r}", field=flag) from None
    if not sizes or sizes[0] < 1:
        raise CapsimInputError(f"expected integers >= 1, got {text!r}", field=flag)
    return sizes


def parse_request_sizes(text: str, model: str) -> list[int]:
    """`--sizes`: request sizes within `model`'s size knob; a one-line input error otherwise."""
    sizes = parse_batch_sizes(text, "--sizes")
    if model not in SIZE_KNOBS:
        knobs = ", ".join(f"{name} ({unit})" for name, (unit, _) in SIZE_KNOBS.items())
        raise CapsimInputError(f"model {model} has no request-size knob (models with one: {knobs})", field="--sizes")
    unit, largest = SIZE_KNOBS[model]
    if sizes[-1] > largest:
        raise CapsimInputError(f"model {model} takes requests of 1..{largest} {unit}, got {sizes[-1]}", field="--sizes")
    return sizes


@app.command("profile")
def profile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="profile file to write (JSON)")],
    model: Annotated[str, typer.Option(help="bundled model: mlp, cnn or transformer")] = "mlp",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 (weights and activations)")] = "float32",
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,2,4,8,16,32",
    window_s: Annotated[float, typer.Option(help="length of one timing window (s)")] = 1.0,
    warmup_s: Annotated[float, typer.Option(help="warm-up per batch size (s)")] = 1.0,
    tolerance: Annotated[float, typer.Option(help="3 window medians must agree within this (0.05 = 5%)")] = 0.05,
    max_windows: Annotated[int, typer.Option(help="stop trying to converge after this many windows")] = 20,
    torch_threads: Annotated[int, typer.Option(help="intra-op threads (0 = server default, 1 executor)")] = 0,
    sizes: Annotated[
        str | None, typer.Option(help="request sizes (e.g. 8,16,32 tokens): a profile with a size axis")
    ] = None,
) -> None:
    """Measure a bundled model's batch latency and write a profile for `service: {kind: profile}`."""
    require_choice(model, MODEL_NAMES, "--model")
    require_choice(device, DEVICES, "--device")
    require_choice(dtype, DTYPE_NAMES, "--dtype")
    batch = parse_batch_sizes(batch_sizes)
    request_sizes = parse_request_sizes(sizes, model) if sizes is not None else None
    if not window_s > 0:
        raise CapsimInputError("must be > 0", field="--window-s")
    if not warmup_s >= 0:
        raise CapsimInputError("must be >= 0", field="--warmup-s")
    if not 0 < tolerance < 1:
        raise CapsimInputError("must be in (0, 1)", field="--tolerance")
    if max_windows < 3:
        raise CapsimInputError("must be >= 3 (convergence compares three windows)", field="--max-windows")
    if torch_threads < 0:
        raise CapsimInputError("must be >= 0", field="--torch-threads")
    from capsim.output_folder import check_output_file

    check_output_file(output, "--output")
    require_server_dependencies()
    argv = [
        sys.executable, "-m", "reference_server.profile",
        "--model", model, "--device", device, "--dtype", dtype, "--batch-sizes", ",".join(map(str, batch)),
        "--output", str(output), "--window-s", repr(window_s), "--warmup-s", repr(warmup_s),
        "--tolerance", repr(tolerance), "--max-windows", str(max_windows), "--torch-threads", str(torch_threads),
    ]  # fmt: skip
    if request_sizes is not None:
        argv += ["--sizes", ",".join(map(str, request_sizes))]
    raise typer.Exit(run_subprocess(argv))
