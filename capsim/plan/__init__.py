"""Planning: questions answered by running simulations, above the engine (`capsim.engine`) and the
serving modes. `batchjob_search` answers a batch job's inverse question (the fewest workers, the
cheapest hardware that meet its deadline)."""
