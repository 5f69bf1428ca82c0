"""Planning: questions answered by running simulations, above the engine (`capsim.engine`) and the
serving modes.

`capsim plan` (docs/model.md, "Planning"; its folder: docs/plan.md): `run` assembles a plan from
`space` (candidate lines: hardware x varied values x traffic level), `search` (the smallest safe
fleet per line, cheapest lines first, pruning), `rules` (headroom, confidence, redundancy, the
LLM engines' headroom and the one SLO check, `meets_slo`), `cache` (per-replication results, for
resuming), `traps`, `day` (the busiest hour that sizes a fixed fleet over a day), `result`
(plan.json's rows) and `folder` (the `--out` folder); `batch` plans a batch job through
`batchjob_search` (the fewest workers, the cheapest hardware that meet its deadline). `executor`
runs independent variants here, on local processes or on Dask.
"""
