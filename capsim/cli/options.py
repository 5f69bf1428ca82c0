"""Option handling shared by commands."""

from __future__ import annotations

from pathlib import Path

from capsim.errors import CapsimInputError
from capsim.scenario import Scenario, load_scenario


def scenario_from_cli(path: Path, overrides: list[str] | None) -> Scenario:
    """Load a scenario file with `--set` overrides; one-line errors name the file and field."""
    return load_scenario(path, overrides or [])


def require_positive(value: int | None, flag: str) -> None:
    """Flags that must be >= 1."""
    if value is not None and value < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {value}", source=flag)
