"""Partition assignment within a consumer group of one topic, as Kafka's assignors compute it.

Members are ordered by their member id (here: the consumer's index, in the order they were started);
partitions by number. Sources: Kafka's RangeAssignor, RoundRobinAssignor and
CooperativeStickyAssignor (docs/sources.md#kafka-consumers).
"""

from __future__ import annotations


def range_assignment(partitions: int, members: list[int]) -> dict[int, list[int]]:
    """RangeAssignor: contiguous ranges; the first `partitions % n` members get one extra."""
    members = sorted(members)
    result: dict[int, list[int]] = {m: [] for m in members}
    if not members:
        return result
    share, extra = divmod(partitions, len(members))
    start = 0
    for i, member in enumerate(members):
        count = share + (1 if i < extra else 0)
        result[member] = list(range(start, start + count))
        start += count
    return result


def round_robin_assignment(partitions: int, members: list[int]) -> dict[int, list[int]]:
    """RoundRobinAssignor: partition p goes to the (p mod n)-th member."""
    members = sorted(members)
    result: dict[int, list[int]] = {m: [] for m in members}
    for p in range(partitions):
        if members:
            result[members[p % len(members)]].append(p)
    return result


def sticky_assignment(partitions: int, members: list[int], current: dict[int, int | None]) -> dict[int, list[int]]:
    """Cooperative-sticky: a balanced assignment (counts differ by at most one) that keeps as many
    partitions as possible with their current owner. `current` maps partition → owner (None: unowned).

    Members keep their partitions (lowest numbers first) up to their quota; the rest, and unowned
    partitions, go to the members furthest below quota. The larger quotas go to the members that
    already own the most, which is what keeps movement minimal.
    """
    members = sorted(members)
    result: dict[int, list[int]] = {m: [] for m in members}
    if not members:
        return result
    owned: dict[int, list[int]] = {m: [] for m in members}
    for p in range(partitions):
        owner = current.get(p)
        if owner in owned:
            owned[owner].append(p)
    share, extra = divmod(partitions, len(members))
    by_holding = sorted(members, key=lambda m: (-len(owned[m]), m))
    quota = {m: share + (1 if i < extra else 0) for i, m in enumerate(by_holding)}
    free: list[int] = []
    for m in members:
        keep = owned[m][: quota[m]]
        result[m] = keep
        free.extend(owned[m][quota[m] :])
    kept = {p for m in members for p in result[m]}
    free.extend(p for p in range(partitions) if p not in kept and p not in free)
    free.sort()
    for p in free:
        neediest = min(members, key=lambda m: (len(result[m]) - quota[m], m))
        result[neediest].append(p)
    for m in members:
        result[m].sort()
    return result
