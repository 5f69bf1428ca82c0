"""Help text people can read: each option's value shown as click names it (`INTEGER`, `FLOAT`, `PATH`,
`TEXT`, `[a|b]`), not as a Python type (`<int>`, `<list[str]>`, `<bool>`).

Typer (0.2x) prints the annotation of a parameter as its value placeholder; setting the parameter's
`metavar` — part of its public API — replaces it. One rule for every command, applied once to the
built command tree, so a new option never needs a hand-written metavar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from capsim.cli.app import command_tree

_PLACEHOLDERS: dict[type, str] = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def placeholder(annotation: Any) -> str:
    """The value placeholder for a parameter annotation: `list[int]` shows as `INTEGER` (the option
    repeats), a `Literal` as its choices, anything unknown as `VALUE`."""
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    choices = get_args(annotation) if str(get_origin(annotation)).endswith("Literal") else ()
    if choices:
        return "[" + "|".join(str(c) for c in choices) + "]"
    if isinstance(annotation, type):
        for kind, text in _PLACEHOLDERS.items():
            if issubclass(annotation, kind):
                return text
    return "VALUE"


def set_metavars(command: Any) -> None:
    """Give every option of `command` and its subcommands a click-style placeholder (flags, `--help`
    included, none) and every argument its upper-case name, unless one was set by hand."""
    import typer

    for node in command_tree(command):
        params = list(getattr(node, "params", []))
        help_option = node.get_help_option(typer.Context(node))  # built once per command, then cached
        if help_option is not None:
            params.append(help_option)
        for param in params:
            if param.metavar is None:
                _set_placeholder(param)


def _set_placeholder(param: Any) -> None:
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.param_type_name == "argument":
        param.metavar = param.name.upper()  # Typer adds the "..." of a repeated argument itself
        # Typer takes an argument's type column from its annotation and ignores metavar there: this
        # instance gets the same rule (tests/test_cli_startup.py fails if a Typer release changes it).
        shown = placeholder(param.type_descriptor.annotation)
        param.display_type_rich = lambda ctx, shown=shown: shown
    else:
        param.metavar = placeholder(param.type_descriptor.annotation)


PIPE_WIDTH_COLUMNS = 120
"""Width of help and tables when stdout is not a terminal: rich would assume 80 columns and cut long
flags, choices and field paths with an ellipsis in a pipe, a log or a CI transcript."""


def widen_when_piped(environ: dict[str, str], stdout_is_terminal: bool) -> None:
    """Set COLUMNS (which rich reads) for a pipe, unless the user chose a width."""
    if not stdout_is_terminal and "COLUMNS" not in environ:
        environ["COLUMNS"] = str(PIPE_WIDTH_COLUMNS)
