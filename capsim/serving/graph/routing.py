"""The edge rules of a graph of models (docs/model.md, "Graphs of models"): where a stage's finished
requests go, how the entry splits traffic between versions, and when a fan-out's join fires.

Rules, each written once here:
- `split_entry`: an arriving request goes to one entry stage, drawn by the weights in force at its
  arrival — per request from the stream "graph/split", or with sticky users by a fixed hash of its
  user id (drawn from "graph/users"), so a user stays on one version while the weights hold and,
  as a canary's weight grows, users only move towards it.
- `Router.route`: a stage's answers go on along its `next` edge at the time they were answered: to
  `to` (each with probability `fraction`, drawn from "graph/route/<stage>"; an answer not sent on
  ends the request there: a cascade's small model answered it), or a copy to every `fan_out`
  branch; a stage without `next` ends the request. A rejected or timed-out request ends there with
  that outcome. Shadow stages' answers are dropped.
- `Router.settle_join`: a fan-out's join fires when `first` (default: all) branches have answered,
  at the k-th answer's time, and the request goes on to `then` (or ends); it fails, with the
  failing branch's outcome and time, as soon as too many branches have failed for k to answer.
  Branches still running after the join has fired or failed are served (capacity, cost) and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from capsim.metrics.request_log import COMPLETED
from capsim.rng import RandomStreams
from capsim.serving.graph.spec import EntrySplit, GraphServing
from capsim.serving.graph.stage import Harvest, Visits

_GOLDEN_64 = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's multiplier (2^64 / golden ratio)


def user_bucket(user_id: np.ndarray) -> np.ndarray:
    """A user's fixed place in [0, 1): Fibonacci hashing of the id (Knuth, TAOCP vol. 3, 6.4), so
    consecutive ids spread evenly and the place never depends on the run."""
    with np.errstate(over="ignore"):
        hashed = (user_id.astype(np.uint64) + np.uint64(1)) * _GOLDEN_64
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_entry(split: EntrySplit, arrival_s: np.ndarray, split_rng: np.random.Generator,
                users_rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """The entry stage (index into `split.split`) of each arriving request."""
    names = list(split.split)
    steps = [split.split, *(step.split for step in split.schedule)]
    cumulative = np.array([np.cumsum([weights[name] for name in names]) for weights in steps])
    cumulative[:, -1] = 1.0  # the last version takes what rounding leaves
    step = np.searchsorted([s.at_s for s in split.schedule], arrival_s, side="right")
    if split.sticky_users is not None:
        place = user_bucket(users_rng.integers(0, split.sticky_users, arrival_s.size))
    else:
        place = split_rng.random(arrival_s.size)
    return np.sum(place[:, None] >= cumulative[step], axis=1).clip(0, len(names) - 1)


@dataclass
class _Join:
    """A fan-out's join for one request: answers and failures counted so far."""

    got: int = 0
    failed: int = 0
    resolved: int = 0
    done: bool = False


@dataclass
class Ended:
    """Requests whose path through the graph ended: their visits (time_s = end) and outcomes."""

    parts: list[Visits] = field(default_factory=list)
    outcomes: list[np.ndarray] = field(default_factory=list)
    rows: int = 0

    def add(self, visits: Visits, outcome: np.ndarray) -> None:
        """Record requests that ended (at `visits.time_s`)."""
        if len(visits):
            self.parts.append(visits)
            self.outcomes.append(outcome)
            self.rows += len(visits)

    def pop(self) -> tuple[Visits, np.ndarray]:
        """Everything recorded since the last pop."""
        if not self.parts:
            return Visits.empty(), np.zeros(0, dtype=np.int8)
        visits, outcome = Visits.concat(self.parts), np.concatenate(self.outcomes)
        self.parts, self.outcomes, self.rows = [], [], 0
        return visits, outcome


class Router:
    """Moves finished requests along the graph's edges into the next stages' inboxes."""

    def __init__(self, graph: GraphServing, streams: RandomStreams) -> None:
        self.graph = graph
        self.entry_stages = list(graph.entry_split().split)
        self.inbox: dict[str, list[Visits]] = {name: [] for name in graph.stages}
        self.shadow_stages = {target for stage in graph.stages.values() for target in stage.shadow}
        self.owner: dict[str, str] = {}  # fan-out branch -> the stage that fans out
        self.joins: dict[str, dict[int, _Join]] = {}
        self.answers: dict[str, list[tuple[Visits, np.ndarray]]] = {}
        self._route_rng: dict[str, np.random.Generator] = {}
        for name, stage in graph.stages.items():
            nxt = stage.next
            if nxt is None:
                continue
            if nxt.fan_out is not None:
                self.joins[name], self.answers[name] = {}, []
                for branch in nxt.fan_out:
                    self.owner[branch] = name
            elif nxt.fraction < 1.0:
                self._route_rng[name] = streams.stream(f"graph/route/{name}")
        self.ended = Ended()

    def due(self, name: str, t_s: float) -> Visits:
        """The requests waiting to arrive at `name` before `t_s`, in arrival order (ties by graph id);
        the rest stay in its inbox."""
        waiting = self.inbox[name]
        if not waiting:
            return Visits.empty()
        visits = Visits.concat(waiting)
        order = np.lexsort((visits.gid, visits.time_s))
        now = order[visits.time_s[order] < t_s]
        later = order[visits.time_s[order] >= t_s]
        self.inbox[name] = [visits.take(later)] if later.size else []
        return visits.take(now)

    def route(self, name: str, harvest: Harvest) -> None:
        """Send on (or end) the requests stage `name` has finished."""
        visits, outcome = harvest.visits, harvest.outcome
        if not len(visits) or name in self.shadow_stages:
            return
        first = np.isnan(visits.start_s)  # the request's first stage: its queue wait and batch size
        visits.start_s[first] = harvest.start_s[first]
        visits.batch_size[first] = harvest.batch_size[first]
        if name in self.owner:
            self.answers[self.owner[name]].append((visits, outcome))
            return
        ok = outcome == COMPLETED
        self.ended.add(visits.take(~ok), outcome[~ok])
        answered = visits.take(ok)
        nxt = self.graph.stages[name].next
        if nxt is None:
            self.ended.add(answered, np.full(len(answered), COMPLETED, dtype=np.int8))
        elif nxt.to is not None:
            rng = self._route_rng.get(name)
            onward = np.ones(len(answered), dtype=bool) if rng is None else rng.random(len(answered)) < nxt.fraction
            self.inbox[nxt.to].append(answered.take(onward))
            done = answered.take(~onward)
            self.ended.add(done, np.full(len(done), COMPLETED, dtype=np.int8))
        else:
            assert nxt.fan_out is not None
            joins = self.joins[name]
            for gid in answered.gid.tolist():
                joins[gid] = _Join()
            for branch in nxt.fan_out:
                self.inbox[branch].append(answered)

    def settle_join(self, owner: str, t_s: float) -> None:
        """Count the branch answers of `owner`'s fan-out that came before `t_s`, in time order, and
        fire or fail the joins they decide (the later ones wait: an answer harvested later may
        still come before them)."""
        pending = self.answers[owner]
        if not pending:
            return
        visits = Visits.concat([v for v, _ in pending])
        outcome = np.concatenate([o for _, o in pending])
        order = np.lexsort((visits.gid, visits.time_s))
        later = order[visits.time_s[order] >= t_s]
        self.answers[owner] = [(visits.take(later), outcome[later])] if later.size else []
        nxt = self.graph.stages[owner].next
        assert nxt is not None and nxt.fan_out is not None
        n = len(nxt.fan_out)
        k = nxt.first if nxt.first is not None else n
        joins = self.joins[owner]
        fired: list[int] = []
        failed: list[int] = []
        for i in order[visits.time_s[order] < t_s].tolist():
            gid = int(visits.gid[i])
            join = joins[gid]
            join.resolved += 1
            if not join.done:
                if outcome[i] == COMPLETED:
                    join.got += 1
                    if join.got == k:
                        join.done = True
                        fired.append(i)
                else:
                    join.failed += 1
                    if join.failed > n - k:
                        join.done = True
                        failed.append(i)
            if join.resolved == n:
                del joins[gid]
        self.ended.add(visits.take(np.array(failed, dtype=np.int64)), outcome[failed])
        onward = visits.take(np.array(fired, dtype=np.int64))
        if nxt.then is not None:
            self.inbox[nxt.then].append(onward)
        else:
            self.ended.add(onward, np.full(len(onward), COMPLETED, dtype=np.int8))

    def idle_into(self, name: str) -> bool:
        """Nothing waits to arrive at `name`: its inbox is empty and, if it follows a join, no
        join is open."""
        if self.inbox[name]:
            return False
        for owner, stage in self.graph.stages.items():
            nxt = stage.next
            if nxt is not None and nxt.then == name and (self.joins[owner] or self.answers[owner]):
                return False
        return True
