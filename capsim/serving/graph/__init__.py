"""Graphs of models: chains, fan-out/fan-in ensembles, conditional routes, traffic splits and shadow
copies, each stage a real-time fleet run by the compiled data plane (docs/model.md, "Graphs of
models"). spec.py: the scenario section; stage.py: one stage's fleet advanced in lock-step;
routing.py: the edge rules and the joins; run.py: the replication loop and its summary."""
