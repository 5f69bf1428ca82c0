"""Number flags take finite numbers: `--rate inf`, `--window-s nan` or `--max-wait-ms 1e400` are
usage errors (one line, exit code 2), as `.inf` is in a scenario file (capsim/input_files.py).

Click's FLOAT type, which Typer uses, reads "inf", "nan" and "1e400" (which overflows to inf) as
floats; a run asked to last `--duration inf` would never end. One rule for every command: each
option or argument whose annotation is a float, an optional float or a list of floats gets a check
in front of its own callback.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from capsim.cli.app import command_tree


def holds_floats(annotation: Any) -> bool:
    """Whether a parameter annotated `annotation` takes floats: float, float | None, list[float]."""
    if annotation is float:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        return any(holds_floats(arg) for arg in typing.get_args(annotation))
    return False


def _check_finite(ctx: Any, param: Any, value: Any, then: Any) -> Any:
    import typer

    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            raise typer.BadParameter(f"expected a finite number (got {item})", ctx=ctx, param=param)
    return then(ctx, param, value) if then is not None else value


def refuse_non_finite_floats(command: Any) -> None:
    """Put the finite-number check in front of every float parameter of `command` and its subcommands."""
    for node in command_tree(command):
        for param in getattr(node, "params", []):
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is None or not holds_floats(descriptor.annotation):
                continue
            previous = param.callback
            param.callback = lambda ctx, p, value, then=previous: _check_finite(ctx, p, value, then)
