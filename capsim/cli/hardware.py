"""`capsim hardware [NAME] [--json] [--catalogue FILE]`: list the hardware catalogue, or one entry
with the source, date and confidence of every figure.

`capsim hardware --models [NAME] [--json]` lists the LLM model catalogue (shapes from config.json).

`capsim hardware TARGET --transfer PROFILE --flops-per-item F [--weight-bytes W ...] [--out FILE]`
predicts a measured profile on TARGET with the roofline transfer (docs/hardware.md) and prints
measured against predicted latency per batch size; `--out` writes the predicted profile, which a
scenario can use as `service: {kind: profile, path: ...}`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from capsim.cli.app import app
from capsim.errors import CapsimInputError

if TYPE_CHECKING:  # numpy, pydantic and the catalogue load when the command runs, not at CLI start
    from capsim.hardware.catalogue import Catalogue
    from capsim.hardware.roofline import ModelCost
    from capsim.hardware.spec import Figure, HardwareSpec
    from capsim.servicetime.profile_format import Profile

_DASH = "—"
_PIPE_WIDTH = 180  # when stdout is not a terminal rich assumes 80 columns and would squeeze the table


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)


def _num(figure: Figure, digits: int = 4) -> str:
    """A figure for the table: its value, '~' when not from a datasheet-grade source, '—' if null."""
    if figure.value is None:
        return _DASH
    mark = "~" if figure.confidence in {"MEM", "unverified", "estimate"} else ""
    return f"{mark}{figure.value:.{digits}g}"


def _int8_fp8(spec: HardwareSpec) -> str:
    return f"{_num(spec.int8_tops)} / {_num(spec.fp8_tflops)}"


def _instance(spec: HardwareSpec) -> str:
    """The instance behind the on-demand price: 'p5.48xlarge ×8'."""
    offer = next((o for o in spec.offers if o.market == "on_demand"), None)
    if offer is None:
        return _DASH
    return f"{offer.instance_type} ×{offer.gpus}" if offer.gpus else offer.instance_type


def _price_date(spec: HardwareSpec) -> str:
    """The date of the on-demand price (prices age fastest), else 'undated'."""
    figure = spec.on_demand_usd_per_hour if spec.on_demand_usd_per_hour.value is not None else spec.spot_usd_per_hour
    if figure.value is None:
        return _DASH
    return figure.date or "undated"


def _mig(spec: HardwareSpec) -> str:
    """The smallest and largest MIG profiles ('1g.10gb..7g.80gb'), or '—' without MIG."""
    if spec.mig is None:
        return _DASH
    names = list(spec.mig.profiles)
    return f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]


def catalogue_table(catalogue: Catalogue) -> Table:
    """The catalogue as a rich table, one row per entry."""
    table = Table(title=f"capsim hardware catalogue ({', '.join(catalogue.files)})", title_justify="left")
    columns = (
        ("name", "left"), ("kind", "left"), ("mem GB", "right"), ("BW GB/s", "right"), ("FP16 TF", "right"),
        ("INT8 / FP8", "right"), ("TDP W", "right"), ("$/h on-demand", "right"), ("instance", "left"),
        ("$/h spot", "right"), ("price date", "left"), ("MIG", "left"),
    )  # fmt: skip
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=header != "price date")  # type: ignore[arg-type]
    for spec in catalogue:
        table.add_row(
            spec.name, spec.kind, _num(spec.memory_gb), _num(spec.memory_bandwidth_gbps), _num(spec.fp16_tflops),
            _int8_fp8(spec), _num(spec.tdp_w), _num(spec.on_demand_usd_per_hour), _instance(spec),
            _num(spec.spot_usd_per_hour), _price_date(spec), _mig(spec),
        )  # fmt: skip
    notice = ", ".join(
        f"{name} {p.spot_notice_s.value:g} s" for name, p in catalogue.providers.items() if p.spot_notice_s.value
    )
    table.caption = (
        "Per GPU (GPUs) or per instance (CPUs); TF = dense TFLOPS, INT8 in TOPS; '~' marks [MEM], unverified or\n"
        "estimated figures; '—' means the sources give no number. `capsim hardware NAME` shows every source."
        + (f"\nSpot notice before termination: {notice}." if notice else "")
    )
    return table


def entry_table(spec: HardwareSpec) -> Table:
    """One entry with the value, source, date and confidence of every figure, then its offers."""
    table = Table(title=f"{spec.name}: {spec.description}", title_justify="left")
    for header in ("figure", "value", "confidence", "source", "date", "note"):
        table.add_column(header)
    for name, figure in spec.figures().items():
        value = _DASH if figure.value is None else f"{figure.value:g}"
        table.add_row(name, value, figure.confidence or "", figure.source or "", figure.date or "", figure.note or "")
    for offer in spec.offers:
        price = f"{offer.usd_per_hour:g}/h" if offer.usd_per_hour is not None else f"{offer.usd_per_gpu_hour:g}/GPU-h"
        gpus = f" ({offer.gpus} GPU)" if offer.gpus else ""
        table.add_row(f"offer {offer.market}", f"${price}", offer.confidence,
                      f"{offer.provider} {offer.instance_type}{gpus}: {offer.source}", offer.date or "",
                      offer.note or "")  # fmt: skip
    if spec.mig is not None:
        for i, (profile, p) in enumerate(spec.mig.profiles.items()):  # the source once, on the first row
            source, note = (spec.mig.source, spec.mig.note or "") if i == 0 else ("", "")
            table.add_row(f"MIG {profile}", f"{p.compute_sevenths}/7 SMs, {p.memory_gb:g} GB, {p.per_gpu} per GPU",
                          spec.mig.confidence, source, "", note)  # fmt: skip
    return table


def catalogue_json(catalogue: Catalogue) -> dict[str, Any]:
    """The merged catalogue as plain JSON: every figure with its provenance."""
    return {
        "files": catalogue.files,
        "facts_read_on": catalogue.facts_read_on,
        "idle_fraction_of_tdp": catalogue.idle_fraction_of_tdp,
        "providers": {name: p.model_dump(mode="json", exclude={"name"}) for name, p in catalogue.providers.items()},
        "hardware": [spec.model_dump(mode="json", exclude={"idle_fraction_of_tdp"}) for spec in catalogue],
    }


def _quantile_ms(levels: list[float], quantiles_ms: list[float], level: float) -> float:
    import numpy as np

    return float(np.interp(level, levels, quantiles_ms))


def transfer_table(measured: Profile, predicted: Profile) -> Table:
    """Measured and predicted mean / p50 / p99 per batch size, with the factor and the bounds."""
    prov = predicted.provenance
    title = (
        f"{prov['source_hardware']} → {prov['target_hardware']} (extrapolated: roofline, "
        f"{prov['precision']['source']} → {prov['precision']['target']}, {prov['gpus_per_replica']['target']} GPU, "
        f"overhead {prov['overhead_s'] * 1e3:.3g} ms{' estimated' if prov['overhead_estimated'] else ''})"
    )
    table = Table(title=title, title_justify="left")
    for header in ("batch", "measured mean / p50 / p99 ms", "predicted mean / p50 / p99 ms", "factor", "bound"):
        table.add_column(header, justify="left" if header == "bound" else "right")
    levels = measured.quantile_levels
    for before, after, factor in zip(measured.points, predicted.points, prov["factors"], strict=True):
        cells = []
        for point in (before, after):
            p50 = _quantile_ms(levels, point.quantiles_ms, 0.5)
            p99 = _quantile_ms(levels, point.quantiles_ms, 0.99)
            cells.append(f"{point.mean_ms:.4g} / {p50:.4g} / {p99:.4g}")
        bound = f"{factor['source_bound']} → {factor['target_bound']}"
        table.add_row(str(before.batch_size), *cells, f"{factor['factor']:.3f}", bound)
    return table


def _model_cost(flops: float | None, weights: float, activations: float, bytes_precision: str) -> ModelCost:
    from pydantic import ValidationError

    from capsim.hardware.roofline import ModelCost

    flags = {
        "flops_per_item": "--flops-per-item",
        "weight_bytes": "--weight-bytes",
        "activation_bytes_per_item": "--activation-bytes-per-item",
        "bytes_precision": "--bytes-precision",
    }
    try:
        return ModelCost(flops_per_item=flops or 0.0, weight_bytes=weights, activation_bytes_per_item=activations,
                         bytes_precision=bytes_precision)  # type: ignore[arg-type]  # fmt: skip
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = flags.get(str(err["loc"][0]), "--flops-per-item") if err["loc"] else "--flops-per-item"
        raise CapsimInputError(err["msg"].removeprefix("Value error, "), source=flag) from None


def _transfer(target_name: str | None, profile_path: Path, catalogue: Catalogue, options: dict[str, Any]) -> None:
    from capsim.servicetime.profile_format import read_profile
    from capsim.servicetime.transfer import measured_on, transfer_profile

    if target_name is None:
        raise CapsimInputError("name the target hardware: capsim hardware TARGET --transfer PROFILE ...",
                               source="--transfer")  # fmt: skip
    if options["out"] is not None:
        from capsim.output_folder import check_output_file

        check_output_file(options["out"], "--out")
    measured = read_profile(profile_path, field="--transfer")
    target = catalogue.get(target_name, field="NAME")
    source = (catalogue.get(options["source"], field="--source") if options["source"]
              else measured_on(measured, catalogue, field="--source"))  # fmt: skip
    model = _model_cost(options["flops"], options["weights"], options["activations"], options["bytes_precision"])
    predicted = transfer_profile(
        measured, source, target, model, options["precision"], options["gpus"], options["efficiency"],
        source_precision=options["source_precision"], source_gpus=options["source_gpus"],
        overhead_s=None if options["overhead_ms"] is None else options["overhead_ms"] / 1000.0,
    )  # fmt: skip
    if options["out"] is not None:
        predicted.write(options["out"])
    if options["as_json"]:
        print(json.dumps(predicted.model_dump(mode="json"), indent=2))
        return
    _console().print(transfer_table(measured, predicted))
    if options["out"] is not None:
        _console().print(f"wrote {options['out']} (provenance says extrapolated: true)")


@app.command("hardware")
def hardware_command(
    name: Annotated[str | None, typer.Argument(help="one entry to show (or the --transfer target)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
    catalogue_file: Annotated[
        Path | None, typer.Option("--catalogue", help="YAML file whose entries override or extend the catalogue")
    ] = None,
    transfer: Annotated[
        Path | None, typer.Option("--transfer", help="profile to predict on NAME (roofline, docs/hardware.md)")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="hardware the profile was measured on")] = None,
    flops: Annotated[float | None, typer.Option("--flops-per-item", help="operations per item")] = None,
    weights: Annotated[float, typer.Option("--weight-bytes", help="bytes read once per batch")] = 0.0,
    activations: Annotated[float, typer.Option("--activation-bytes-per-item", help="bytes per item")] = 0.0,
    bytes_precision: Annotated[str, typer.Option("--bytes-precision", help="precision of the byte counts")] = "fp16",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16, bf16, int8 or fp8 on NAME")] = "fp16",
    source_precision: Annotated[str | None, typer.Option("--source-precision", help="default: the profile's")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs per replica on NAME (tensor parallel)")] = 1,
    source_gpus: Annotated[int, typer.Option("--source-gpus", help="GPUs per measured replica")] = 1,
    efficiency: Annotated[float, typer.Option("--scaling-efficiency", help="multi-GPU efficiency")] = 0.9,
    overhead_ms: Annotated[float | None, typer.Option("--overhead-ms", help="default: estimated")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the predicted profile here")] = None,
    models: Annotated[bool, typer.Option("--models", help="list the LLM model catalogue (or show model NAME)")] = False,
) -> None:
    """List the hardware catalogue with sources, show one entry, or predict a profile on other hardware."""
    if models:
        from capsim.cli.hardware_models import show_models

        show_models(name, as_json)
        return
    from capsim.hardware.catalogue import load_catalogue

    catalogue = load_catalogue(catalogue_file)
    if transfer is not None:
        options = {
            "source": source, "flops": flops, "weights": weights, "activations": activations,
            "bytes_precision": bytes_precision, "precision": precision, "source_precision": source_precision,
            "gpus": gpus, "source_gpus": source_gpus, "efficiency": efficiency, "overhead_ms": overhead_ms,
            "out": out, "as_json": as_json,
        }  # fmt: skip
        _transfer(name, transfer, catalogue, options)
        return
    if name is not None:
        spec = catalogue.get(name, field="NAME")
        if as_json:
            print(json.dumps(spec.model_dump(mode="json", exclude={"idle_fraction_of_tdp"}), indent=2))
        else:
            _console().print(entry_table(spec))
        return
    if as_json:
        print(json.dumps(catalogue_json(catalogue), indent=2))
        return
    _console().print(catalogue_table(catalogue))
