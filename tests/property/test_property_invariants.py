"""Invariants of every run (hypothesis over small random scenarios): conservation of requests,
utilization <= 1, consistent request records, timeouts, queue capacity and the batcher's rules.
See tests/property/invariants.py for the exact statements."""

from __future__ import annotations

from hypothesis import given

from capsim.engine import simulate
from capsim.scenario import Scenario
from tests.property.invariants import check_run
from tests.property.strategies import scenarios, settings_for


@settings_for(max_examples=150)
@given(scenario=scenarios())
def test_invariants_hold_on_random_scenarios(scenario: Scenario) -> None:
    check_run(simulate(scenario))


@settings_for(max_examples=40)
@given(scenario=scenarios())
def test_invariants_hold_per_replication_and_combined(scenario: Scenario) -> None:
    # Including replications without any request (test_property_known_bugs.py pins one).
    check_run(simulate(scenario, replications=3))
