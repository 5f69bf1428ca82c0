"""The real-time data plane (arrivals, balancing, front ends, queues, batching, executors), one event
loop compiled with numba under the SimPy control plane (capsim/serving/fleet.py): kernel.py the loop
and its entry points, rules.py each rule of docs/model.md as a named function, heap.py the event
heap, balancers.py the load-balancer registry, plane.py and layout.py its state, fleet.py where it
meets the control plane, support.py what it runs (docs/model.md)."""
