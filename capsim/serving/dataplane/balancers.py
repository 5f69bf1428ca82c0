"""Load balancers: which ready replica gets the next request. Adding one is one function here
(decorated with `@balancer`) plus its test: the schema accepts its name, and the compiled data
plane calls it (capsim.serving.dataplane.kernel compiles every registered function with numba).

Each balancer is `pick(ints, ready, n, loads, draws) -> slot`, called only with n >= 2 ready
replicas (one alone takes every request), after queued requests past their deadline have left:

- `ready[:n]`: the ready replicas' slots, in the order they became ready;
- `loads[slot]`: each replica's outstanding requests (front end, queue and batches in service);
- `ints[I_LB_NEXT]`: the balancer's own counter (starts at 0; round robin's next index);
- `draws[ints[I_LB_POS]:]`: unused uniform draws in [0, 1) from the `balancer` stream; a balancer
  registered with `draws_per_pick = k` finds at least k there and advances `ints[I_LB_POS]` past
  what it used.

Plain Python over numpy arrays: the functions run as they are in their unit tests and compiled in
the data plane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from capsim.serving.dataplane.layout import I_LB_NEXT, I_LB_POS

Pick = Callable[[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray], int]


@dataclass(frozen=True)
class Balancer:
    """A registered balancer: its rule and how many random draws one pick may take."""

    pick: Pick
    draws_per_pick: int


BALANCERS: dict[str, Balancer] = {}
"""Every load balancer by its `serving.load_balancer` name, in registration order."""


def balancer(name: str, draws_per_pick: int = 0) -> Callable[[Pick], Pick]:
    """Register the decorated function as the balancer `name`."""

    def register(pick: Pick) -> Pick:
        BALANCERS[name] = Balancer(pick, draws_per_pick)
        return pick

    return register


@balancer("round_robin")
def round_robin(ints: np.ndarray, ready: np.ndarray, n: int, loads: np.ndarray, draws: np.ndarray) -> int:
    """Each replica in turn (Kubernetes Services with IPVS rr, most L7 proxies' default)."""
    i = ints[I_LB_NEXT] % n
    ints[I_LB_NEXT] = i + 1
    return int(ready[i])


@balancer("random", draws_per_pick=1)
def random(ints: np.ndarray, ready: np.ndarray, n: int, loads: np.ndarray, draws: np.ndarray) -> int:
    """A uniformly random replica (kube-proxy in iptables mode)."""
    pos = ints[I_LB_POS]
    ints[I_LB_POS] = pos + 1
    return int(ready[min(int(draws[pos] * n), n - 1)])


@balancer("least_outstanding")
def least_outstanding(ints: np.ndarray, ready: np.ndarray, n: int, loads: np.ndarray, draws: np.ndarray) -> int:
    """The replica with the fewest outstanding requests (Envoy LEAST_REQUEST with full information).
    Ties go to the first in a rotating order, so that no replica is favoured."""
    start = ints[I_LB_NEXT]
    if start >= n:
        start = 0  # the fleet may have shrunk
    ints[I_LB_NEXT] = start + 1 if start + 1 < n else 0
    best = start
    best_load = loads[ready[start]]
    if best_load == 0:
        return int(ready[best])
    for step in range(1, n):
        i = start + step
        if i >= n:
            i -= n
        load = loads[ready[i]]
        if load < best_load:
            best = i
            best_load = load
            if load == 0:
                break
    return int(ready[best])


@balancer("power_of_two", draws_per_pick=2)
def power_of_two(ints: np.ndarray, ready: np.ndarray, n: int, loads: np.ndarray, draws: np.ndarray) -> int:
    """Two distinct random replicas, the less loaded wins, ties to the first drawn (Mitzenmacher's
    power of two choices; Envoy LEAST_REQUEST's default)."""
    pos = ints[I_LB_POS]
    ints[I_LB_POS] = pos + 2
    a = min(int(draws[pos] * n), n - 1)
    b = min(int(draws[pos + 1] * (n - 1)), n - 2)
    if b >= a:
        b += 1  # a second replica distinct from the first, uniformly
    return int(ready[a]) if loads[ready[a]] <= loads[ready[b]] else int(ready[b])


@balancer("weighted_random", draws_per_pick=1)
def weighted_random(ints: np.ndarray, ready: np.ndarray, n: int, loads: np.ndarray, draws: np.ndarray) -> int:
    """A random replica with probability proportional to 1 / (1 + its outstanding requests): a
    load-aware random choice that, unlike least_outstanding, never sends every request of a burst
    to the same idle replica."""
    total = 0.0
    for i in range(n):
        total += 1.0 / (1.0 + loads[ready[i]])
    pos = ints[I_LB_POS]
    ints[I_LB_POS] = pos + 1
    target = draws[pos] * total
    acc = 0.0
    for i in range(n - 1):
        acc += 1.0 / (1.0 + loads[ready[i]])
        if target < acc:
            return int(ready[i])
    return int(ready[n - 1])  # (also where rounding left `target` a hair above the last sum)
