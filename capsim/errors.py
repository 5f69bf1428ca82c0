"""Errors meant for people: they name the file, the field and what was expected."""

from __future__ import annotations


class CapsimInputError(Exception):
    """Bad input (scenario file, flag, measurement file). The CLI prints it on one line, exit code 2."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        self.detail = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """`file: field: message`, leaving out the parts that are unknown; always one line (a message
        quoted from a library may hold line breaks)."""
        parts = [p for p in (self.source, self.field) if p]
        parts.append(self.detail)
        return " ".join(": ".join(parts).splitlines())
