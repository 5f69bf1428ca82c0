"""Entry point of the `capsim` console script: registers the commands and turns errors for people
into one line on stderr with exit code 2 (never a traceback)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from capsim.cli import calibrate as _calibrate  # noqa: F401  (registers the command)
from capsim.cli import check as _check  # noqa: F401
from capsim.cli import hardware as _hardware  # noqa: F401
from capsim.cli import loadtest as _loadtest  # noqa: F401
from capsim.cli import plan as _plan  # noqa: F401
from capsim.cli import profile as _profile  # noqa: F401
from capsim.cli import report as _report  # noqa: F401
from capsim.cli import serve as _serve  # noqa: F401
from capsim.cli import simulate as _simulate  # noqa: F401
from capsim.cli import sweep as _sweep  # noqa: F401
from capsim.cli import validate as _validate  # noqa: F401
from capsim.cli.app import app
from capsim.cli.finite_floats import refuse_non_finite_floats
from capsim.cli.help_format import set_metavars, widen_when_piped
from capsim.errors import CapsimInputError

try:  # Typer >= 0.20 vendors click; its usage errors are not click's own classes
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

EXIT_BAD_INPUT = 2


_EXTRA_OF_MODULE = {
    "hdrh": "loadtest", "locust": "loadtest", "requests": "loadtest", "pynvml": "loadtest", "scipy": "loadtest",
    "fastapi": "server", "uvicorn": "server", "prometheus_client": "server", "orjson": "server",
    "torch": "server", "dask": "cluster", "distributed": "cluster",
}  # fmt: skip
"""Optional dependencies and the extra of pyproject.toml that installs each: a command that needs one
on a base install says which `pip install` brings it, instead of a traceback."""


def missing_dependency_line(exc: ModuleNotFoundError) -> str | None:
    """One line for a missing optional dependency, or None when the missing module is not one of them
    (a bug or a broken install, reported as an internal error)."""
    top = (exc.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    torch_first = "pip install torch==2.13.0 && " if extra == "server" else ""
    return (f"this command needs {top}, which the base install leaves out: {torch_first}"
            f"pip install 'capsim[{extra}]' (or, in a clone, pip install -e '.[{extra}]')")  # fmt: skip


def _version_callback(value: bool) -> None:
    if value:
        from capsim import __version__

        print(f"capsim {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="print capsim's version and exit", is_eager=True,
                                          callback=_version_callback)] = False,
) -> None:
    """Capacity planning for ML inference serving: simulate, serve, load test, calibrate."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    widen_when_piped(os.environ, sys.stdout.isatty())  # type: ignore[arg-type]
    cli = typer.main.get_command(app)
    set_metavars(cli)
    refuse_non_finite_floats(cli)
    from capsim.output_folder import record_command_line

    record_command_line(sys.argv[1:] if argv is None else argv)  # the markers of --out folders quote it
    try:
        result = cli(args=argv, standalone_mode=False, prog_name="capsim")
    except CapsimInputError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NoArgsIsHelpError:
        return 0  # the help text has been printed
    except UsageError as exc:
        command = exc.ctx.command.name if exc.ctx is not None else None
        hint = f" (see 'capsim {command} --help')" if command and command != "capsim" else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        line = missing_dependency_line(exc)
        if line is None or os.environ.get("CAPSIM_DEBUG"):
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug, not bad input: one line, the traceback only on request
        if os.environ.get("CAPSIM_DEBUG"):
            raise
        message = " ".join(str(exc).splitlines())  # one line, as for bad input
        print(f"internal error: {type(exc).__name__}: {message} (set CAPSIM_DEBUG=1 for the traceback)",
              file=sys.stderr)  # fmt: skip
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
