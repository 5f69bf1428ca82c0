"""CountSearch: the smallest count meeting a monotone test, by galloping then bisection (hand-traced)."""

from __future__ import annotations

import pytest

from capsim.plan.search import CountSearch


def trace(low: int, high: int, threshold: int | None) -> tuple[int | None, list[int]]:
    """Run the search against 'count >= threshold meets' (None: nothing meets); (answer, probes)."""
    search = CountSearch(low, high)
    probes = []
    while (count := search.next_count()) is not None:
        probes.append(count)
        search.record(count, threshold is not None and count >= threshold)
        assert len(probes) <= high - low + 2
    return search.met_at if search.met_at is not None and search.met_at <= high else None, probes


def test_the_floor_meeting_costs_one_probe() -> None:
    assert trace(2, 64, 2) == (2, [2])


def test_galloping_then_bisection_hand_traced() -> None:
    # 2 fails; gallop 4 fails, 8 fails, 16 meets; bisect (8, 16]: 12 meets, 10 fails, 11 meets.
    assert trace(2, 64, 11) == (11, [2, 4, 8, 16, 12, 10, 11])


def test_nothing_meeting_up_to_the_bound_is_none() -> None:
    assert trace(2, 10, None) == (None, [2, 4, 8, 10])


@pytest.mark.parametrize("threshold", range(3, 41))
def test_the_answer_is_the_threshold_in_logarithmic_probes(threshold: int) -> None:
    answer, probes = trace(3, 40, threshold)
    assert answer == threshold
    assert len(probes) <= 2 * 40 .bit_length() + 1  # gallop + bisect: O(log n), not the 38 of a scan


def test_a_cap_below_the_open_range_finishes_the_search() -> None:
    search = CountSearch(2, 64)
    search.record(2, False)
    search.record(4, False)
    search.cap(4)  # a cheaper answer elsewhere: nothing above 4 matters
    assert search.finished and search.next_count() is None


def test_a_noisy_contradiction_keeps_what_was_known_first() -> None:
    search = CountSearch(2, 64)
    search.record(8, True)
    search.record(9, False)  # a larger fleet failing after a smaller one met: noise, ignored
    assert (search.met_at, search.failed_up_to) == (8, 1)
    search.record(4, False)
    search.record(3, True)  # below a count that failed: ignored
    assert (search.met_at, search.failed_up_to) == (8, 4)


@pytest.mark.parametrize(("low", "high"), [(2, 2), (2, 3), (2, 64), (3, 40), (5, 200)])
def test_the_budget_s_worst_case_bounds_every_search(low: int, high: int) -> None:
    # capsim.plan.run.worst_case_probes sizes the run budget: no threshold (nor none meeting) takes
    # more probes, the N+1 probe included.
    from capsim.plan.run import worst_case_probes

    longest = max(len(trace(low, high, t)[1]) for t in [*range(low, high + 1), None])
    assert longest + 1 <= worst_case_probes(low, high)
