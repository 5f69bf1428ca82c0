"""Load balancers: which replica gets the next request. Each is a small class with `pick()`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from capsim.rng import buffered


class LoadBalancer(Protocol):
    """Chooses a replica index for each request."""

    def pick(self, loads: Sequence[int]) -> int:
        """Index of the replica that gets the next request, given each replica's outstanding
        requests (queued or in service)."""
        ...


class RoundRobin:
    """Each replica in turn (Kubernetes Services with IPVS rr, most L7 proxies' default)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._next = 0

    def pick(self, loads: Sequence[int]) -> int:
        i = self._next % len(loads)
        self._next = i + 1
        return i


class RandomChoice:
    """A uniformly random replica (kube-proxy in iptables mode)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._u = buffered(rng.random)

    def pick(self, loads: Sequence[int]) -> int:
        return min(int(next(self._u) * len(loads)), len(loads) - 1)


class LeastOutstanding:
    """The replica with the fewest requests queued or in service (Envoy LEAST_REQUEST with full
    information). Ties go to the first in a rotating order so no replica is favoured."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._offset = 0
        self._orders: list[list[int]] = []

    def pick(self, loads: Sequence[int]) -> int:
        n = len(loads)
        if len(self._orders) != n:
            # Each replica's rotation of the others, precomputed: this runs once per request.
            self._orders = [[(start + step) % n for step in range(1, n)] for start in range(n)]
        start = self._offset if self._offset < n else 0  # the fleet may have shrunk
        self._offset = start + 1 if start + 1 < n else 0
        best, best_load = start, loads[start]
        if best_load == 0:
            return best
        for i in self._orders[start]:
            load = loads[i]
            if load < best_load:
                best, best_load = i, load
                if load == 0:
                    break
        return best


class PowerOfTwo:
    """Two distinct random replicas, the less loaded wins (Mitzenmacher's power of two choices;
    Envoy LEAST_REQUEST's default behaviour)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._u = buffered(rng.random)

    def pick(self, loads: Sequence[int]) -> int:
        n = len(loads)
        if n == 1:
            return 0
        a = min(int(next(self._u) * n), n - 1)
        b = min(int(next(self._u) * (n - 1)), n - 2)
        if b >= a:
            b += 1  # a second replica distinct from the first, uniformly
        return a if loads[a] <= loads[b] else b


BALANCERS: dict[str, Callable[[np.random.Generator], LoadBalancer]] = {
    "round_robin": RoundRobin,
    "random": RandomChoice,
    "least_outstanding": LeastOutstanding,
    "power_of_two": PowerOfTwo,
}


def make_balancer(kind: str, rng: np.random.Generator) -> LoadBalancer:
    """The balancer named `kind` (one of BALANCERS)."""
    return BALANCERS[kind](rng)
