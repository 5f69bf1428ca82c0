"""The pieces a report section is built from, as HTML strings: tables (right-aligned numbers), a
terminal table of capsim's (rich) shown as HTML, figures (matplotlib, embedded as base64 PNG),
lists of facts and notes. Every string put in a page goes through `esc`."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from capsim.report.html.page import esc

FIGURE_DPI = 130  # crisp on a laptop screen when shown at ~900 px, ~60-120 kB a chart


@dataclass(frozen=True)
class Column:
    """A table column: its header, whether it holds numbers (right-aligned), or remarks (`note`:
    smaller, wrapped)."""

    header: str
    numeric: bool = False
    note: bool = False

    def cell(self, text: str) -> str:
        """One cell of this column as HTML."""
        css = ' class="num"' if self.numeric else ' class="note"' if self.note else ""
        return f"<td{css}>{esc(text)}</td>"


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], row_classes: Sequence[str] | None = None,
          caption: str | None = None) -> str:
    """A table of already formatted cells; `row_classes` marks rows (`pick`, `fail`)."""
    head = "".join(f'<th class="num">{esc(c.header)}</th>' if c.numeric else f"<th>{esc(c.header)}</th>"
                   for c in columns)  # fmt: skip
    lines = []
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes and row_classes[i] else ""
        cells = "".join(col.cell(cell) for col, cell in zip(columns, row, strict=True))
        lines.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    body = "\n".join(lines)
    return (f'<div class="table-wrap"><table>{title}<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _plain(renderable: Any) -> str:
    from rich.text import Text

    if isinstance(renderable, Text):
        return renderable.plain
    return Text.from_markup(str(renderable)).plain


def rich_table(source: Any) -> str:
    """A rich `Table` that capsim prints in the terminal, as an HTML table: the same rows and
    columns (right-justified columns right-aligned), markup dropped, rows styled bold kept as `pick`
    (the sweep's ★). Its title becomes a caption above it."""
    columns = [Column(_plain(c.header), c.justify == "right") for c in source.columns]
    cells = [[_plain(cell) for cell in c.cells] for c in source.columns]
    rows = [list(row) for row in zip(*cells, strict=True)] if cells else []
    classes = ["pick" if row.style and "bold" in str(row.style) else "" for row in source.rows]
    caption = _plain(source.title) if source.title else None
    return (f'<p class="mono">{esc(caption)}</p>' if caption else "") + table(columns, rows, classes)


def figure(fig: Any, caption: str, alt: str | None = None) -> str:
    """A matplotlib figure as an inline PNG (`data:` URL) with its caption; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png(buffer.getvalue(), caption, alt)


def png(data: bytes, caption: str, alt: str | None = None) -> str:
    """PNG bytes (a chart a capsim command already drew) shown inline with a caption."""
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{esc(alt or caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")  # fmt: skip


def facts(items: Sequence[tuple[str, str]]) -> str:
    """Name–value pairs as a definition list (provenance, settings)."""
    body = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in items)
    return f'<dl class="facts">{body}</dl>'


def notes(items: Sequence[str], css: str = "") -> str:
    """A bulleted list (warnings, traps, assumptions); nothing when empty."""
    if not items:
        return ""
    klass = f' class="notes {css}"' if css else ' class="notes"'
    return f"<ul{klass}>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


def paragraph(text: str, css: str = "") -> str:
    """A paragraph of plain text."""
    return f'<p class="{css}">{esc(text)}</p>' if css else f"<p>{esc(text)}</p>"


def answer(text: str, met: bool = True) -> str:
    """The report's answer in one highlighted paragraph (red edge when the goal is not met)."""
    return f'<p class="answer{"" if met else " bad"}">{esc(text)}</p>'


def code(text: str) -> str:
    """A command line or other literal text, as a preformatted block."""
    return f"<pre>{esc(text)}</pre>"
