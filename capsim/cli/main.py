"""Entry point of the `capsim` console script: registers the commands and turns errors for people
into one line on stderr with exit code 2 (never a traceback)."""

from __future__ import annotations

import sys

import click

from capsim.cli import check as _check  # noqa: F401  (registers the command)
from capsim.cli import simulate as _simulate  # noqa: F401
from capsim.cli.app import app
from capsim.errors import CapsimInputError

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="capsim")
    except CapsimInputError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.UsageError as exc:
        hint = f" (see 'capsim {exc.ctx.command.name} --help')" if exc.ctx and exc.ctx.command.name else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
