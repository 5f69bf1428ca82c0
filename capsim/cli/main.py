"""Entry point of the `capsim` console script: registers the commands and turns errors for people
into one line on stderr with exit code 2 (never a traceback)."""

from __future__ import annotations

import os
import sys

import typer

from capsim.cli import calibrate as _calibrate  # noqa: F401  (registers the command)
from capsim.cli import check as _check  # noqa: F401
from capsim.cli import hardware as _hardware  # noqa: F401
from capsim.cli import loadtest as _loadtest  # noqa: F401
from capsim.cli import profile as _profile  # noqa: F401
from capsim.cli import serve as _serve  # noqa: F401
from capsim.cli import simulate as _simulate  # noqa: F401
from capsim.cli import sweep as _sweep  # noqa: F401
from capsim.cli import validate as _validate  # noqa: F401
from capsim.cli.app import app
from capsim.errors import CapsimInputError

try:  # Typer >= 0.20 vendors click; its usage errors are not click's own classes
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="capsim")
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
    except Exception as exc:  # a bug, not bad input: one line, the traceback only on request
        if os.environ.get("CAPSIM_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set CAPSIM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
