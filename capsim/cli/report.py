"""`capsim report RUN_DIR... [-o reports/NAME.html]`: one self-contained HTML file for a planning
review, from any run folder capsim writes; two or more folders of one kind are compared side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capsim.cli.app import app


@app.command("report")
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders written by capsim (simulate --out, sweep --out, "
                                                   "plan --out, simulate --solve --out, loadtest --out); two or "
                                                   "more of one kind are compared side by side")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write (default: "
                                                "reports/<folder name>.html, or reports/<A>-vs-<B>.html)")] = None,
) -> None:
    """Write one self-contained HTML report (styles and charts inline, nothing fetched) of run folders."""
    from capsim.output_folder import check_output_file
    from capsim.report.html.build import build_report, default_report_path, write_report

    path = output if output is not None else default_report_path(run_dirs)
    check_output_file(path, "--output")  # before the work: a bad destination costs nothing
    html = build_report(run_dirs)
    write_report(html, path)
    Console(stderr=True).print(f"wrote {path} ({len(html.encode('utf-8')) / 1e6:.2f} MB)")
