"""The page around a report: one self-contained HTML document.

Everything the page shows is inside the file: the style sheet is inline, images are `data:` URLs,
there are no scripts and no fonts to fetch (the system's own sans-serif and monospace faces), so the
file opens the same from a mail attachment, an air-gapped laptop or a CI artifact. A
Content-Security-Policy in the page itself forbids the browser from loading anything else
(`default-src 'none'`; images only from `data:`), so a reference slipped in by mistake fails
visibly in the browser test instead of leaking a request.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
:root { --ink: #1d2329; --muted: #5b6670; --rule: #d8dde2; --band: #f5f7f9; --accent: #1f5fa8;
        --good: #1b7a3d; --bad: #b3261e; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
             "Liberation Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 64px; }
header.doc { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 22px; }
header.doc .kicker { color: var(--muted); font-size: 13px; letter-spacing: .04em; text-transform: uppercase; }
header.doc h1 { font-size: 26px; line-height: 1.25; margin: 4px 0 6px; }
header.doc .question { font-size: 16px; color: var(--muted); margin: 0; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p { margin: 8px 0; max-width: 78ch; }
.answer { background: var(--band); border-left: 4px solid var(--accent); padding: 12px 16px; margin: 12px 0;
          font-size: 16px; max-width: none; }
.answer.bad { border-left-color: var(--bad); }
table { border-collapse: collapse; margin: 10px 0 6px; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { text-align: left; font-weight: 600; background: var(--band); border-bottom: 2px solid var(--rule); }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
td.note { font-size: 12.5px; color: var(--muted); }
tr.pick td { background: #eaf4ec; font-weight: 600; }
tr.fail td { color: var(--muted); }
.table-wrap { overflow-x: auto; }
figure { margin: 14px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 90ch; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 10px 0; font-size: 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
              font-size: 13px; }
pre { background: var(--band); padding: 10px 12px; font-size: 13px; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.notes { padding-left: 20px; }
ul.notes li { margin: 4px 0; max-width: 90ch; }
.warn { color: var(--warn); }
.bad { color: var(--bad); }
.good { color: var(--good); }
.side-by-side { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--rule);
         padding-top: 10px; }
@media print { main { max-width: none; padding: 0; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""


def esc(text: object) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Section:
    """One titled part of a report; `body` is HTML built from capsim/report/html/blocks.py."""

    title: str
    body: str

    def html(self) -> str:
        """The section as HTML, its title an `h2`."""
        return f'<section>\n<h2>{esc(self.title)}</h2>\n{self.body}\n</section>'


def page(title: str, kicker: str, question: str, sections: list[Section], footer: str) -> str:
    """The whole document: a header naming what is reported (`kicker`, e.g. "capsim simulate run"),
    its title and the question it answers, then the sections, then a footer line."""
    body = "\n".join(section.html() for section in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="capsim report">
<title>{esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header class="doc">
<div class="kicker">{esc(kicker)}</div>
<h1>{esc(title)}</h1>
<p class="question">{esc(question)}</p>
</header>
{body}
<footer>{esc(footer)}</footer>
</main>
</body>
</html>
"""
