"""The Typer application object that every command module registers itself on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="capsim",
    help="Capacity planning for ML inference serving: simulate, sweep, serve, load test, calibrate, validate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
