"""The compiled engine: the real-time data plane (arrivals, balancing, queues, batching, executors)
compiled with numba under the SimPy control plane. Same rules, same random numbers, same results as
the SimPy engine, tens of times faster on long runs (benchmarks/simulate_speed.py,
benchmarks/autoscale_day.py). `support.py` says which scenarios it runs."""
