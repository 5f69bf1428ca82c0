"""The Typer application object that every command module registers itself on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

app = typer.Typer(
    name="capsim",
    help="Capacity planning for ML inference serving: simulate, sweep, serve, load test, calibrate, validate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command_tree(command: Any) -> Iterator[Any]:
    """`command` and every subcommand below it: what the CLI-wide parameter rules walk over (help
    placeholders, finite floats) once the app is built."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from command_tree(sub)
