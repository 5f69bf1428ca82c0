"""The blue-green cutover's replica lifecycle (docs/model.md, "Graphs of models"; the scenario's
`serving.rollout`, capsim/serving/graph/spec.py `BlueGreen`).

Where requests go is the entry split's rule (`BlueGreen.entry_split`: all to blue, from the switch
all to green, capsim/serving/graph/routing.py `split_entry`). What is added here is when each
version's replicas exist, and it reuses the fleet's own lifecycle (capsim/serving/fleet.py):
- green starts with no replicas, so nothing is billed; at `warm_up_at_s` it is scaled to its
  `replicas`, each a cold start billed from the start of provisioning;
- at `switch_at_s` blue is scaled to 0: its replicas leave the balancer, finish the requests they
  hold (queued and in service) and are released when drained, which is when their bill stops;
- blue's input is closed at the first lock-step time at or after the switch: every request that
  arrived before the switch has been fed to it by then.
Both fleets are billed from green's warm-up until blue has drained: the cutover's cost spike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from capsim.serving.graph.spec import GraphServing

if TYPE_CHECKING:
    import simpy

    from capsim.scenario import Scenario
    from capsim.serving.graph.stage import Stage


def at_start(graph: GraphServing, name: str, staged: Scenario) -> Scenario:
    """Stage `name`'s scenario as its fleet starts the run: a cutover's green with no replicas (its
    capacity as configured is what stability checks weigh against its load from the switch on)."""
    if graph.rollout is None or graph.rollout.green != name:
        return staged
    return staged.model_copy(update={"serving": staged.serving.model_copy(update={"replicas": 0})})


def entry_ended_for(graph: GraphServing, name: str, t_s: float) -> bool:
    """Whether the entry sends stage `name` no request at or after `t_s`: blue from the switch on."""
    return graph.rollout is not None and graph.rollout.blue == name and t_s >= graph.rollout.switch_at_s


def schedule_cutover(graph: GraphServing, stages: dict[str, Stage]) -> None:
    """Start green's replicas at the warm-up and release blue's at the switch (their own SimPy
    clocks: each stage's environment runs these as it is advanced)."""
    rollout = graph.rollout
    if rollout is None:
        return
    green, blue = stages[rollout.green], stages[rollout.blue]
    replicas = graph.stages[rollout.green].serving.replicas

    def warm_up(_event: simpy.Event) -> None:
        green.fleet.scale_to(replicas)

    def switch(_event: simpy.Event) -> None:
        blue.fleet.scale_to(0)

    green.env.timeout(rollout.warm_up_at_s).callbacks.append(warm_up)
    blue.env.timeout(rollout.switch_at_s).callbacks.append(switch)
