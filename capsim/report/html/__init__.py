"""`capsim report`: one self-contained HTML document per run folder, or several compared side by side.

page.py (the document and its inline style), blocks.py (tables, figures, notes), formats.py (numbers
with units), run_folders.py (which kind a folder is), kinds.py (the registry: one module per kind —
simulate_report, solve_report, sweep_report, plan_report, loadtest_report, validate_report) and
build.py (one report or a comparison, written atomically).
"""
