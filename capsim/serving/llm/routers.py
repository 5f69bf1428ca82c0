"""LLM routers: which ready engine gets the next request, by what only an LLM fleet knows — each
replica's KV cache and the request's prefix. Adding one is one function here (decorated with
`@router`) plus its test: `serving.load_balancer` accepts its name (besides the real-time balancers
of capsim/serving/dataplane/balancers.py, which route on outstanding requests), and the compiled
loop (capsim/serving/llm/kernel.py `arrive`) calls it.

Each router is `pick(p, n, key) -> slot`, called only with n >= 2 ready replicas:
- `p.ready[:n]`: the ready replicas' slots, in the order they became ready; `p.slot_replica[slot]`
  the replica's id (stable while it lives);
- `p.loads[slot]`: its waiting + running requests; `p.free_n[slot]`: its free KV blocks, out of
  the same number per slot (cached blocks nobody holds count as free, as vLLM's kv_cache_usage_perc
  has it);
- `p.ints[I_LB_NEXT]`: the router's own counter (starts at 0);
- `key`: the request's prefix key (a session's turns share one; every other request has its own).

Plain Python over the plane's arrays: the functions run as they are in their unit tests and
compiled in the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from capsim.serving.dataplane.layout import I_LB_NEXT  # (capsim.serving.llm.plane asserts it is the same)

Pick = Callable[[Any, int, int], int]

ROUTERS: dict[str, Pick] = {}
"""Every LLM router by its `serving.load_balancer` name, in registration order."""


def router(name: str) -> Callable[[Pick], Pick]:
    """Register the decorated function as the router `name`."""

    def register(pick: Pick) -> Pick:
        ROUTERS[name] = pick
        return pick

    return register


@router("least_kv_utilization")
def least_kv_utilization(p: Any, n: int, key: int) -> int:
    """The replica holding the fewest KV blocks (the lowest vllm:kv_cache_usage_perc: llm-d's
    kv-cache-utilization scorer, the production stack's router by KV load), ties to the fewer
    outstanding requests, then to the first in a rotating order, so that no replica is favoured."""
    start = p.ints[I_LB_NEXT]
    if start >= n:
        start = 0  # the fleet may have shrunk
    p.ints[I_LB_NEXT] = start + 1 if start + 1 < n else 0
    blocks = p.blk_ref.shape[0] // p.slot_state.shape[0]  # per replica (plane.C_BLOCKS: the plane imports numba)
    best = start
    best_used = blocks - p.free_n[p.ready[start]]
    best_load = p.loads[p.ready[start]]
    for step in range(1, n):
        i = start + step
        if i >= n:
            i -= n
        slot = p.ready[i]
        used = blocks - p.free_n[slot]
        if used < best_used or (used == best_used and p.loads[slot] < best_load):
            best = i
            best_used = used
            best_load = p.loads[slot]
    return int(p.ready[best])


_HASH_PRIME = 2_147_483_647  # 2^31 - 1: every product below stays under 2^62 (no overflow in numba's int64)


@router("prefix_affinity")
def prefix_affinity(p: Any, n: int, key: int) -> int:
    """Requests with the same prefix key — a session's turns — go to the same replica while it is
    ready, where their prefix is cached (llm-d's prefix-cache scorer, SGLang's cache-aware router,
    vLLM production stack's session routing): rendezvous hashing, the ready replica with the highest
    weight of (key, replica id), so a replica joining or leaving moves only the keys it wins or held.
    Ignores load: a hot session stays where it is."""
    best = 0
    best_score = -1
    hk = ((key % _HASH_PRIME) * 48_271 + 12_345) % _HASH_PRIME
    for i in range(n):
        # the weight of (key, replica): hashes of each multiplied, then squared, modulo a prime (the
        # product makes the replicas' order differ from key to key), the same in Python and compiled
        hr = (p.slot_replica[p.ready[i]] * 69_621 + 2_531_011) % _HASH_PRIME
        h = (hk * hr + hk) % _HASH_PRIME
        score = (h * h + 1) % _HASH_PRIME
        if score > best_score:
            best = i
            best_score = score
    return int(p.ready[best])


def compiled_route() -> Any:
    """`route(code, p, n, key)`: the ready slot the LLM router `code` picks (n >= 2), compiled — a
    chain of `if code == 0` tests inlined into the loop, as capsim/serving/dataplane/rules.py chains
    the balancers (numba calls no function from a tuple by a run-time index cheaply). numba is
    imported here, not with the module: the scenario schema reads ROUTERS at start-up."""
    from numba import njit

    def chain(picks: tuple[Pick, ...]) -> Any:
        first = njit(inline="always", error_model="numpy")(picks[0])
        if len(picks) == 1:
            return first
        rest = chain(picks[1:])
        last = len(picks) == 2

        def pick(code, p, n, key):  # type: ignore[no-untyped-def]
            if code == 0:
                return first(p, n, key)
            if last:
                return rest(p, n, key)
            return rest(code - 1, p, n, key)

        return njit(inline="always", error_model="numpy")(pick)

    return chain(tuple(ROUTERS.values()))


ROUTER_CODES = {name: code for code, name in enumerate(ROUTERS)}


def balancer_code(name: str) -> int:
    """`cfg_i[C_BALANCER]` of a `serving.load_balancer` name: a real-time balancer's code (>= 0), or
    -1 - the code of an LLM router."""
    from capsim.serving.dataplane.rules import BALANCER_CODES

    return BALANCER_CODES[name] if name in BALANCER_CODES else -1 - ROUTER_CODES[name]
