"""The scenario section of a graph of models (`serving.mode: graph`): named stages, each a full
real-time fleet, and how requests move between them (docs/model.md, "Graphs of models").

```yaml
serving:
  mode: graph
  entry: {split: {v1: 0.95, v2: 0.05}, sticky_users: 20000}   # or one stage name: entry: ranker
  stages:
    v1: {serving: {replicas: 4, ...}, next: {to: ranker}}            # a chain
    cheap: {serving: {...}, next: {to: big, fraction: 0.1}}          # a conditional route (cascade)
    fan: {serving: {...}, next: {fan_out: [m1, m2, m3], first: 2, then: vote}}   # an ensemble
    v1b: {serving: {...}, shadow: [v2-shadow]}                       # a shadow copy of v1b's arrivals
  # instead of entry, a blue-green cutover between two entry stages (versions):
  rollout: {kind: blue_green, blue: v1, green: v2, warm_up_at_s: 600, switch_at_s: 900}
```

A stage's `service` and `hardware` default to the scenario's own. The stage models refer to
`RealtimeServing` and `Hardware`, which live in capsim/scenario/schema.py (which imports this
module): they are resolved there by `rebuild_graph_spec` once both exist.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from capsim.input_model import InputModel
from capsim.servicetime import ServiceSpec

if TYPE_CHECKING:
    from capsim.scenario.schema import Hardware, RealtimeServing, Scenario

# Weights are read as written in YAML (decimals): a sum within this of 1 is 1.
_WEIGHT_TOLERANCE = 1e-9


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Next(_Strict):
    """Where a stage's answers go: one stage (`to`, a share `fraction` of them: a conditional route)
    or several at once (`fan_out`, joined when all or the `first` k have answered, then on to `then`).
    Without `next` a stage ends the request's path."""

    to: str | None = Field(default=None, min_length=1, description="the next stage (a chain)")
    fraction: float = Field(default=1.0, gt=0, le=1, description="share of answers that go on (a cascade)")
    fan_out: list[str] | None = Field(default=None, min_length=2, description="branch stages, each sent a copy")
    first: int | None = Field(default=None, ge=1, description="the join fires on the first k answers (default all)")
    then: str | None = Field(default=None, min_length=1, description="the stage after the join (default: done)")

    @model_validator(mode="after")
    def _one_kind(self) -> Next:
        if (self.to is None) == (self.fan_out is None):
            raise ValueError("give either to (a chain or conditional route) or fan_out (an ensemble)")
        if self.fan_out is None and (self.first is not None or self.then is not None):
            raise ValueError("first and then belong to a fan_out")
        if self.fan_out is not None:
            if self.fraction != 1.0:
                raise ValueError("fraction routes a share of answers to one stage (to:); a fan_out sends every one")
            if len(set(self.fan_out)) != len(self.fan_out):
                raise ValueError("fan_out names a stage twice")
            if self.first is not None and self.first > len(self.fan_out):
                raise ValueError(f"first ({self.first}) must be at most the number of branches ({len(self.fan_out)})")
        return self

    def targets(self) -> list[str]:
        """Every stage this edge can send a request to."""
        if self.to is not None:
            return [self.to]
        assert self.fan_out is not None
        return [*self.fan_out, *([self.then] if self.then is not None else [])]


class GraphStage(_Strict):
    """One stage: its own real-time fleet (replicas, batching, balancer, autoscaler, cold starts),
    model speed and hardware (the scenario's when left out), and where its answers go."""

    serving: RealtimeServing
    service: ServiceSpec | None = Field(default=None, description="default: the scenario's service")
    hardware: Hardware | None = Field(default=None, description="default: the scenario's hardware")
    next: Next | None = None
    shadow: list[str] = Field(default_factory=list, description="stages sent a copy of this stage's "
                              "arrivals whose answers are dropped (capacity and cost counted)")  # fmt: skip


class SplitStep(_Strict):
    """From `at_s` on, the entry split's weights are these (a progressive canary)."""

    at_s: float = Field(ge=0)
    split: dict[str, float]


class EntrySplit(_Strict):
    """A weighted split of the arriving requests between stages (model versions): by request, or
    with `sticky_users` by a hash of the request's user id (users drawn uniformly from that many), so
    a user always sees one version while the weights hold."""

    split: dict[str, float] = Field(min_length=1)
    sticky_users: int | None = Field(default=None, ge=1)
    schedule: list[SplitStep] = Field(default_factory=list, description="later weights, by time")

    @model_validator(mode="after")
    def _weights(self) -> EntrySplit:
        for where, split in (("split", self.split), *((f"schedule[{i}].split", s.split)
                                                      for i, s in enumerate(self.schedule))):  # fmt: skip
            if any(w < 0 or not math.isfinite(w) for w in split.values()):
                raise ValueError(f"{where}: weights must be >= 0")
            total = sum(split.values())
            if abs(total - 1.0) > _WEIGHT_TOLERANCE:
                raise ValueError(f"{where}: weights must sum to 1 (they sum to {total:g})")
            if set(split) != set(self.split):
                raise ValueError(f"{where}: must name the same stages as split ({', '.join(self.split)})")
        times = [s.at_s for s in self.schedule]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("schedule: at_s must increase from step to step")
        return self

    def weights_at(self, t_s: float) -> dict[str, float]:
        """The weights in force at `t_s`."""
        current = self.split
        for step in self.schedule:
            if step.at_s <= t_s:
                current = step.split
        return current


class BlueGreen(_Strict):
    """A blue-green cutover (docs/model.md, "Graphs of models"): `green` has no replicas (and no bill)
    until `warm_up_at_s`, when its replicas start (cold starts); every request arriving before
    `switch_at_s` goes to `blue`, every later one to `green`; at the switch blue's replicas leave the
    balancer, finish what they hold and are released (billed until each has drained)."""

    kind: Literal["blue_green"]
    blue: str = Field(min_length=1, description="the version serving until the switch")
    green: str = Field(min_length=1, description="the version serving from the switch on")
    warm_up_at_s: float = Field(ge=0, description="when green's replicas start (their cold start begins)")
    switch_at_s: float = Field(gt=0, description="when new requests go to green and blue drains")

    @model_validator(mode="after")
    def _order(self) -> BlueGreen:
        if self.blue == self.green:
            raise ValueError("blue and green must be two different stages")
        if self.warm_up_at_s > self.switch_at_s:
            raise ValueError(f"warm_up_at_s ({self.warm_up_at_s:g}) must be at or before switch_at_s "
                             f"({self.switch_at_s:g}): green warms up before it takes traffic")  # fmt: skip
        return self

    def entry_split(self) -> EntrySplit:
        """The cutover as an entry split: all to blue, then from the switch all to green."""
        after = SplitStep(at_s=self.switch_at_s, split={self.blue: 0.0, self.green: 1.0})
        return EntrySplit(split={self.blue: 1.0, self.green: 0.0}, schedule=[after])


class GraphServing(_Strict):
    """Requests through a graph of models: an entry (one stage or a split), or a rollout between two
    entry stages, and named stages."""

    mode: Literal["graph"] = "graph"
    entry: EntrySplit | None = Field(default=None, description="where requests arrive: a stage's name, or a "
                                     "split between stages")  # fmt: skip
    rollout: BlueGreen | None = Field(default=None, description="a blue-green cutover (instead of entry)")
    stages: dict[str, GraphStage] = Field(min_length=1)

    @field_validator("entry", mode="before")
    @classmethod
    def _one_stage_is_a_split(cls, value: Any) -> Any:
        # `entry: ranker` reads as a split giving that stage every request.
        return {"split": {value: 1.0}} if isinstance(value, str) else value

    def entry_split(self) -> EntrySplit:
        """The entry as a split (one stage: weight 1; a rollout: its split over time)."""
        if self.rollout is not None:
            return self.rollout.entry_split()
        assert self.entry is not None
        return self.entry

    @model_validator(mode="after")
    def _well_formed(self) -> GraphServing:
        names = set(self.stages)

        def known(name: str, where: str) -> None:
            if name not in names:
                raise ValueError(f"{where}: unknown stage {name!r} (stages: {', '.join(self.stages)})")

        if (self.entry is None) == (self.rollout is None):
            raise ValueError("give either entry (a stage or a split) or rollout (a blue-green cutover)")
        if self.rollout is not None:
            for role in ("blue", "green"):
                name = getattr(self.rollout, role)
                known(name, f"rollout.{role}")
                if self.stages[name].serving.autoscaling is not None:
                    raise ValueError(f"stages.{name}: a blue-green version is a fixed fleet (the rollout starts and "
                                     "releases its replicas): remove its autoscaling")  # fmt: skip
        for name in self.entry_split().split:
            known(name, "entry")
        shadows: set[str] = set()
        routed: set[str] = set(self.entry_split().split)
        for name, stage in self.stages.items():
            for target in stage.shadow:
                known(target, f"stages.{name}.shadow")
                shadows.add(target)
            if stage.next is not None:
                for target in stage.next.targets():
                    known(target, f"stages.{name}.next")
                    routed.add(target)
                if stage.next.fan_out is not None:
                    for branch in stage.next.fan_out:
                        if self.stages[branch].next is not None:
                            raise ValueError(f"stages.{branch}: a fan_out branch answers to its join: remove its next")
            if self.rollout is not None:
                for target in successors(self, name):
                    if target in (self.rollout.blue, self.rollout.green):
                        raise ValueError(f"stages.{name}: {target} is a blue-green version: only the rollout "
                                         "sends it requests")  # fmt: skip
        for target in shadows:
            if target in routed:
                raise ValueError(f"stages.{target}: a shadow stage's answers are dropped: it cannot also be routed to")
            if self.stages[target].next is not None or self.stages[target].shadow:
                raise ValueError(f"stages.{target}: a shadow stage ends its path: remove its next and shadow")
        topological_order(self)  # raises on a cycle
        unused = names - routed - shadows
        if unused:
            raise ValueError(f"stages: {', '.join(sorted(unused))} receive no requests (not in entry, next or shadow)")
        return self


def successors(graph: GraphServing, name: str) -> list[str]:
    """Every stage `name` sends requests to (routes, fan-out branches, the join's next, shadows)."""
    stage = graph.stages[name]
    return [*(stage.next.targets() if stage.next is not None else []), *stage.shadow]


def topological_order(graph: GraphServing) -> list[str]:
    """The stages in an order where each comes after every stage that sends it requests (Kahn's
    algorithm, ties in the order the scenario lists them); a cycle is an error naming its stages."""
    incoming = {name: 0 for name in graph.stages}
    for name in graph.stages:
        for target in successors(graph, name):
            incoming[target] += 1
    # A fan-out's join (its `then`) waits for the branches, not for the forking stage alone.
    for stage in graph.stages.values():
        if stage.next is not None and stage.next.fan_out is not None and stage.next.then is not None:
            incoming[stage.next.then] += len(stage.next.fan_out)
    ready = [name for name, count in incoming.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        after = successors(graph, name)
        for other in graph.stages.values():
            nxt = other.next
            if nxt is not None and nxt.fan_out is not None and nxt.then is not None and name in nxt.fan_out:
                after.append(nxt.then)
        for target in after:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    if len(order) < len(graph.stages):
        cycle = [name for name in graph.stages if name not in order]
        raise ValueError(f"stages: requests go round in a cycle through {', '.join(cycle)}")
    return order


def stage_scenario(scenario: Scenario, name: str) -> Scenario:
    """The scenario of stage `name` alone: its serving section, its service and hardware (the
    scenario's when it gives none; hardware priced from the catalogue when it gives no price)."""
    from capsim.scenario.load import _with_catalogue_figures  # deferred: the loader imports the schema

    graph = scenario.serving
    assert isinstance(graph, GraphServing)
    stage = graph.stages[name]
    staged = scenario.model_copy(update={
        "name": f"{scenario.name}/{name}", "serving": stage.serving, "slo": None,
        "service": stage.service if stage.service is not None else scenario.service,
        "hardware": stage.hardware if stage.hardware is not None else scenario.hardware,
    })  # fmt: skip
    return _with_catalogue_figures(staged) if staged.hardware.usd_per_hour is None else staged


def visit_shares(graph: GraphServing) -> dict[str, float]:
    """Expected visits to each stage per request arriving at the graph: an entry stage's largest
    weight over its schedule (the most it carries), times each route's `fraction`; a fan-out sends
    one visit to every branch and, after the join, one to `then`; a shadow gets its stage's visits."""
    split = graph.entry_split()
    shares = {name: 0.0 for name in graph.stages}
    for name in split.split:
        shares[name] = max(weights[name] for weights in (split.split, *(s.split for s in split.schedule)))
    for name in topological_order(graph):
        stage = graph.stages[name]
        for shadow in stage.shadow:
            shares[shadow] += shares[name]
        nxt = stage.next
        if nxt is None:
            continue
        if nxt.to is not None:
            shares[nxt.to] += shares[name] * nxt.fraction
        else:
            assert nxt.fan_out is not None
            for target in nxt.targets():
                shares[target] += shares[name]
    return shares


def rebuild_graph_spec(**types: Any) -> None:
    """Resolve the stage models' references to `RealtimeServing` and `Hardware` (called by
    capsim/scenario/schema.py once it has defined them)."""
    for model in (GraphStage, GraphServing):
        model.model_rebuild(_types_namespace=types)
