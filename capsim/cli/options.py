"""Option handling shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.errors import CapsimInputError
from capsim.scenario import Scenario, load_scenario
from capsim.serving.dataplane.support import ENGINES, EngineChoice

CatalogueOption = Annotated[
    Path | None,
    typer.Option("--catalogue", help="YAML file whose entries override or extend the hardware catalogue"),
]


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="auto (compiled for long real-time runs), simpy, or compiled (the real-time data plane in numba: "
        "the same results, tens of times faster)",
    ),
]


def engine_from_cli(text: str) -> EngineChoice:
    """The --engine value, checked (one-line error, exit 2, on anything else)."""
    for engine in ENGINES:
        if text == engine:
            return engine
    raise CapsimInputError(f"expected one of {', '.join(ENGINES)}, got {text!r}", source="--engine")


def scenario_from_cli(path: Path, overrides: list[str] | None, catalogue: Path | None = None) -> Scenario:
    """Load a scenario file with `--set` overrides and an optional user catalogue; one-line errors
    name the file and field."""
    return load_scenario(path, overrides or [], catalogue)


def require_positive(value: int | None, flag: str) -> None:
    """Flags that must be >= 1."""
    if value is not None and value < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {value}", source=flag)
