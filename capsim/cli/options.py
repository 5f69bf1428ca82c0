"""Option handling shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capsim.errors import CapsimInputError
from capsim.scenario import Scenario, load_scenario

CatalogueOption = Annotated[
    Path | None,
    typer.Option("--catalogue", help="YAML file whose entries override or extend the hardware catalogue"),
]


def scenario_from_cli(path: Path, overrides: list[str] | None, catalogue: Path | None = None) -> Scenario:
    """Load a scenario file with `--set` overrides and an optional user catalogue; one-line errors
    name the file and field."""
    return load_scenario(path, overrides or [], catalogue)


def require_positive(value: int | None, flag: str) -> None:
    """Flags that must be >= 1."""
    if value is not None and value < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {value}", source=flag)
