# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # Planning next quarter: traffic forecast → plan → report
#
# **Question.** The image-embedding API of `scenarios/quickstart.yaml` (L4 replicas, dynamic
# batching, p99 under 50 ms) has grown every month. How many replicas, with which batching window,
# will it need at the end of next quarter, what will that cost per month, and what goes to the
# planning review?
#
# The walk-through: fit the growth of the monthly peak rate and forecast three months ahead with
# an upper band; let `capsim plan` find the cheapest safe configuration at each forecast level
# (headroom, 95% confidence and redundancy built in); and turn the plan into the one HTML file the
# review reads (`capsim report`). Run it as a script (`python notebooks/plan_next_quarter.py`) or
# open it in Jupyter with jupytext; the test suite runs it with `CAPSIM_NOTEBOOK_FAST=1` (shorter
# simulated runs). Nothing is written to the working directory: the plan and the report go to a
# temporary folder (or to `$CAPSIM_PLAN_OUT` when set).

# %%
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import capsim
from capsim.cli.main import main as capsim_cli


def repo_root() -> Path:
    """The checkout that holds scenarios/, whatever the working directory: found from this file when it
    runs as a script, else (a Jupyter kernel has no __file__) from the working directory upwards, else
    beside the imported capsim package (an editable install)."""
    starts = [Path(__file__).resolve().parent] if "__file__" in globals() else []
    starts += [Path.cwd().resolve(), Path(capsim.__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / "scenarios" / "quickstart.yaml").is_file():
                return folder
    raise FileNotFoundError("scenarios/quickstart.yaml not found: run this notebook from a capsim checkout")


ROOT = repo_root()
FAST = os.environ.get("CAPSIM_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("CAPSIM_PLAN_OUT") or tempfile.mkdtemp(prefix="capsim-plan-"))
DURATION = ["duration_s=60", "warmup_s=10"] if FAST else ["duration_s=600", "warmup_s=60"]

# %% [markdown]
# ## 1. The traffic forecast
#
# The busiest hour's mean rate of each of the last six months (req/s), as a dashboard would give
# it. Growth of this kind is close to geometric, so fit a straight line to the logarithm of the
# rate, project it three months past the last one, and take an upper band from the spread of the
# monthly residuals (the 95% prediction interval of the fit, by the t distribution with n − 2
# degrees of freedom).

# %%
peak_rps = np.array([1010.0, 1120.0, 1205.0, 1350.0, 1440.0, 1610.0])
months = np.arange(peak_rps.size, dtype=float)
slope, intercept = np.polyfit(months, np.log(peak_rps), 1)
residuals = np.log(peak_rps) - (intercept + slope * months)
ahead = months[-1] + 3.0
sigma = np.sqrt(np.sum(residuals**2) / (months.size - 2))
spread = sigma * np.sqrt(1.0 + 1.0 / months.size + (ahead - months.mean()) ** 2 / np.sum((months - months.mean()) ** 2))
T_975_DF4 = 2.776  # Student's t, 97.5th percentile, 4 degrees of freedom
assert months.size - 2 == 4, "T_975_DF4 is for six months of history"
forecast_rps = float(np.exp(intercept + slope * ahead))
upper_rps = float(np.exp(intercept + slope * ahead + T_975_DF4 * spread))
print(f"growth {np.expm1(slope):.1%} a month; in three months: {forecast_rps:,.0f} req/s forecast, "
      f"{upper_rps:,.0f} req/s at the top of the 95% band")

# %% [markdown]
# ## 2. The plan
#
# One `capsim plan` for both levels: a varied `workload.` field is a traffic level, planned on its
# own. The planner searches the replica count and the batching windows given, simulates each
# candidate until the 95% interval of its p99 is clear of the SLO, refuses a fleet whose peak load
# would use more than 80% of its capacity, and keeps at least two replicas.

# %%
levels = [round(forecast_rps), round(upper_rps)]
plan_dir = OUT / "next-quarter-plan"
argv = ["plan", str(ROOT / "scenarios" / "quickstart.yaml"), "--max-wait-ms", "2,5",
        "--vary", f"workload.arrival.rate_rps={levels[0]},{levels[1]}", "--jobs", "1", "--quiet",
        "--out", str(plan_dir)] + [arg for pair in DURATION for arg in ("--set", pair)]  # fmt: skip
assert capsim_cli(argv) == 0
plan = json.loads((plan_dir / "plan.json").read_text())
for level in plan["levels"]:
    pick = level["pick"]
    assert pick is not None, f"no configuration meets the SLO at {level['load']}: widen the search"
    print(f"{level['offered_rps']:>7,.0f} req/s: {pick['replicas']} × {pick['hardware']}, window "
          f"{pick['max_wait_ms']:g} ms, p99 {pick['tail_ms']:.1f} ms, peak load {pick['rho_peak']:.0%} of "
          f"capacity, ${pick['cost_usd_per_month']:,.0f}/month")
print(f"{plan['simulations']} replications simulated ({plan['requests_simulated']:,} requests)")

# %% [markdown]
# ## 3. The report for the review
#
# `capsim report` turns the plan folder into one self-contained HTML file: the recommendation,
# the alternatives, cost against latency with the SLO and the pick, the pick over time, the traps
# and the provenance (the command that reproduces the plan is in it).

# %%
report = OUT / "next-quarter-plan.html"
assert capsim_cli(["report", str(plan_dir), "-o", str(report)]) == 0
html = report.read_text(encoding="utf-8")
assert "Recommendation" in html and 'src="http' not in html
print(f"report: {report} ({report.stat().st_size / 1e6:.2f} MB)")

# %% [markdown]
# ## Answer

# %%
central, upper = (level["pick"] for level in plan["levels"])
print(f"Answer: at the top of the forecast band ({levels[1]:,} req/s) run {upper['replicas']} × "
      f"{upper['hardware']} with a {upper['max_wait_ms']:g} ms window, ${upper['cost_usd_per_month']:,.0f} a month; "
      f"the central forecast ({levels[0]:,} req/s) needs {central['replicas']} "
      f"(${central['cost_usd_per_month']:,.0f} a month). The review document is {report.name}.")

# %% [markdown]
# **Caveats.** Six monthly points make a short history: provision for the top of the band and scale
# down when the quarter's traffic is known. The service times are the quickstart's parametric
# model, not a measured profile; plan with your own (`capsim profile`, `capsim calibrate`) before
# committing money.

# %%
if FAST and not os.environ.get("CAPSIM_PLAN_OUT"):  # the test suite's runs leave nothing behind
    shutil.rmtree(OUT)
