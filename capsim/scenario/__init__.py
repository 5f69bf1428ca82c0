"""Scenario files: `schema` is the pydantic v2 schema (composed from each serving mode's section),
`load` reads YAML, applies `--set` overrides and fills figures from the hardware catalogue, and
`catalogue` is the catalogue one scenario sees plus the profile transfer it drives. The names below
are re-exported so `from capsim.scenario import Scenario, load_scenario` keeps working."""

from capsim.scenario.load import apply_overrides, load_scenario, parse_override, read_yaml, validate_scenario
from capsim.scenario.schema import (
    Batching,
    Cache,
    Hardware,
    LoadBalancerKind,
    RealtimeServing,
    Scenario,
    ServingSpec,
    Slo,
    Workload,
)

__all__ = [
    "Batching",
    "Cache",
    "Hardware",
    "LoadBalancerKind",
    "RealtimeServing",
    "Scenario",
    "ServingSpec",
    "Slo",
    "Workload",
    "apply_overrides",
    "load_scenario",
    "parse_override",
    "read_yaml",
    "validate_scenario",
]
