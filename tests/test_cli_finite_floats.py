"""Number flags refuse inf and NaN with one line and exit code 2 (capsim/cli/finite_floats.py)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
import typer

from capsim.cli.app import app
from capsim.cli.finite_floats import holds_floats, refuse_non_finite_floats
from capsim.cli.main import main


def _float_params(command: Any) -> list[Any]:
    found = [p for p in command.params if hasattr(p, "type_descriptor") and holds_floats(p.type_descriptor.annotation)]
    for sub in getattr(command, "commands", {}).values():
        found += _float_params(sub)
    return found


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
def test_a_non_finite_flag_is_one_line_and_exit_2(text: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["hardware", "L4", "--transfer", "x.json", "--weight-bytes", text])
    assert code == 2
    assert err.getvalue().splitlines() == [
        f"error: Invalid value for '--weight-bytes': expected a finite number (got {float(text)}) "
        "(see 'capsim hardware --help')"
    ]


def test_every_float_flag_is_checked_and_finite_values_pass() -> None:
    cli = typer.main.get_command(app)
    refuse_non_finite_floats(cli)
    params = _float_params(cli)
    assert len(params) >= 10  # loadtest, calibrate, hardware, profile and serve take numbers
    for param in params:
        assert param.callback(None, param, 2.5) == 2.5
        assert param.callback(None, param, None) is None
        with pytest.raises(typer.BadParameter):
            param.callback(None, param, float("nan"))
