"""Option handling shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from capsim.errors import CapsimInputError

if TYPE_CHECKING:  # the schema (pydantic models, numpy, simpy) loads when a command runs, not at CLI start
    from capsim.scenario import Scenario
    from capsim.serving.dataplane.support import EngineChoice

CatalogueOption = Annotated[
    Path | None,
    typer.Option("--catalogue", help="YAML file whose entries override or extend the hardware catalogue"),
]


EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="deprecated: accepted and ignored for one release (every real-time run uses the compiled data plane)",
    ),
]
ENGINE_DEPRECATED = ("note: --engine is deprecated and ignored: every real-time run uses the compiled data plane; "
                     "the option goes in the next release")  # fmt: skip

QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="no progress on stderr (a line every few seconds, or a bar on a terminal)"),
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="run even when the run budget says it exceeds this machine's memory or time"),
]
JobsOption = Annotated[
    int | None,
    typer.Option("--jobs", help="worker processes, here or in --cluster local (default: one per CPU)"),
]
# `\[` keeps rich's help from reading "[cluster]" as markup (and dropping it).
ClusterOption = Annotated[
    str | None,
    typer.Option("--cluster", help="run the variants on Dask: 'local' (a LocalCluster of --jobs processes) or a "
                 "scheduler address such as tcp://HOST:8786 (needs the cluster extra: "
                 "pip install 'capsim\\[cluster]')"),
]  # fmt: skip


def engine_from_cli(text: str | None) -> EngineChoice:
    """The --engine value, checked (one-line error, exit 2, on anything else); when it is given, a
    one-line deprecation note on stderr (`ENGINE_DEPRECATED`). "auto" when it is not."""
    from capsim.serving.dataplane.support import ENGINES

    if text is None:
        return "auto"
    for engine in ENGINES:
        if text == engine:
            typer.echo(ENGINE_DEPRECATED, err=True)
            return engine
    raise CapsimInputError(f"expected one of {', '.join(ENGINES)}, got {text!r}", source="--engine")


def scenario_from_cli(path: Path, overrides: list[str] | None, catalogue: Path | None = None) -> Scenario:
    """Load a scenario file with `--set` overrides and an optional user catalogue; one-line errors
    name the file and field."""
    from capsim.scenario import load_scenario

    return load_scenario(path, overrides or [], catalogue)


def require_positive(value: int | None, flag: str) -> None:
    """Flags that must be >= 1."""
    if value is not None and value < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {value}", source=flag)
