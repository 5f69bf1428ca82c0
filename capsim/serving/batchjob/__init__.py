"""Batch jobs (`serving.mode: batch`): a dataset scored by a pool of workers. `schema` is the
scenario section, `job` the SimPy model, `summary` its figures, `run` the replications, `checks`
the rules that need the service model. The inverse question (fewest workers, cheapest hardware that
meet the deadline) is `capsim.plan.batchjob_search`. Only the schema is imported here:
`capsim.scenario.schema` needs it. The other modules see `Scenario` for annotations only, so the
scenario package never imports a batch-job module that imports it back."""

from capsim.serving.batchjob.schema import BatchJobServing

__all__ = ["BatchJobServing"]
