"""capsim: capacity planning for ML inference serving.

The public API is small: load a scenario, simulate it, read the result::

    from capsim import load_scenario, simulate
    result = simulate(load_scenario("scenarios/quickstart.yaml"), replications=5)
    print(result.summary["latency_ms"]["p99"])

Importing capsim never imports torch or locust.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capsim.engine import RunResult, simulate
    from capsim.scenario import Scenario, load_scenario

__all__ = ["RunResult", "Scenario", "load_scenario", "simulate"]

try:
    __version__ = version("capsim")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# The public API loads on first use (PEP 562): `import capsim.cli` must not pull in numpy, SimPy and
# the engine, so that `capsim --help` starts in a fraction of a second.
_PUBLIC = {"RunResult": "capsim.engine", "simulate": "capsim.engine",
           "Scenario": "capsim.scenario", "load_scenario": "capsim.scenario"}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'capsim' has no attribute {name!r}")
    return getattr(import_module(module), name)
