"""`capsim hardware [NAME] [--json] [--catalogue FILE]`: list the hardware catalogue, or one entry
with the source, date and confidence of every figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from capsim.cli.app import app
from capsim.hardware.catalogue import Catalogue, load_catalogue
from capsim.hardware.spec import Figure, HardwareSpec

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


def catalogue_table(catalogue: Catalogue) -> Table:
    """The catalogue as a rich table, one row per entry."""
    table = Table(title=f"capsim hardware catalogue ({', '.join(catalogue.files)})", title_justify="left")
    columns = (
        ("name", "left"), ("kind", "left"), ("mem GB", "right"), ("BW GB/s", "right"), ("FP16 TF", "right"),
        ("INT8 / FP8", "right"), ("TDP W", "right"), ("$/h on-demand", "right"), ("instance", "left"),
        ("$/h spot", "right"), ("price date", "left"),
    )  # fmt: skip
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=header != "price date")  # type: ignore[arg-type]
    for spec in catalogue:
        table.add_row(
            spec.name, spec.kind, _num(spec.memory_gb), _num(spec.memory_bandwidth_gbps), _num(spec.fp16_tflops),
            _int8_fp8(spec), _num(spec.tdp_w), _num(spec.on_demand_usd_per_hour), _instance(spec),
            _num(spec.spot_usd_per_hour), _price_date(spec),
        )  # fmt: skip
    notice = ", ".join(
        f"{name} {p.spot_notice_s.value:g} s" for name, p in catalogue.providers.items() if p.spot_notice_s.value
    )
    table.caption = (
        "Per GPU (GPUs) or per instance (CPUs); TF = dense TFLOPS, INT8 in TOPS; '~' marks [MEM], unverified or\n"
        "estimated figures; '—' means the facts give no number. `capsim hardware NAME` shows every source."
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


@app.command("hardware")
def hardware_command(
    name: Annotated[str | None, typer.Argument(help="show one entry with every figure's source")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the catalogue as JSON on stdout")] = False,
    catalogue_file: Annotated[
        Path | None, typer.Option("--catalogue", help="YAML file whose entries override or extend the catalogue")
    ] = None,
) -> None:
    """List the hardware catalogue: memory, bandwidth, throughput, power and prices, with sources."""
    catalogue = load_catalogue(catalogue_file)
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
