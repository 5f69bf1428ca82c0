"""capsim: capacity planning for ML inference serving.

The public API is small: load a scenario, simulate it, read the result::

    from capsim import load_scenario, simulate
    result = simulate(load_scenario("scenarios/quickstart.yaml"), replications=5)
    print(result.summary["latency_ms"]["p99"])

Importing capsim never imports torch or locust.
"""

from capsim.engine import RunResult, simulate
from capsim.scenario import Scenario, load_scenario

__all__ = ["RunResult", "Scenario", "load_scenario", "simulate"]
__version__ = "0.1.0"
