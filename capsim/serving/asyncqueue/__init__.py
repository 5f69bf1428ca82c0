"""`serving.mode: async`: accept with 202, queue, workers pull batches, clients poll for the result.

Only the schema is imported here (`capsim.scenario.schema` composes it); the simulation is in
`capsim.serving.asyncqueue.run`.
"""

from capsim.serving.asyncqueue.spec import AsyncServing

__all__ = ["AsyncServing"]
