"""The real-time data plane's event heap: a binary min-heap over five parallel arrays of the plane
(`h_time`, `h_seq`, `h_kind`, `h_slot`, `h_aux`), ordered by (time, seq). `seq` counts the events
pushed so far (`ints[I_SEQ]`), so events at equal times come out in the order they were scheduled,
as SimPy's event ids order them (docs/model.md, "How the control plane and the data plane meet").

An entry is a batch completion (EV_DONE: slot, executor), a batching timer (EV_TIMER: slot, the
window's token) or a request leaving its replica's front end (EV_FRONT: slot, request id). The
arrival timer is kept beside the heap (one at most). Python grows the arrays between calls of the
loop when `needs_python` asks for room.
"""

from __future__ import annotations

from numba import njit

from capsim.serving.dataplane.layout import I_HEAP_N, I_SEQ


@njit(inline="always", error_model="numpy")
def heap_push(p, t, kind, slot, aux):  # type: ignore[no-untyped-def]
    """Schedule an event of `kind` at `t` for `slot` (with `aux`), after every event already
    scheduled at the same time."""
    h_time, h_seq, h_kind, h_slot, h_aux, ints = p.h_time, p.h_seq, p.h_kind, p.h_slot, p.h_aux, p.ints
    i = ints[I_HEAP_N]
    ints[I_HEAP_N] = i + 1
    seq = ints[I_SEQ]
    ints[I_SEQ] = seq + 1
    while i > 0:  # sift up: move parents down until the new entry's place is found
        parent = (i - 1) >> 1
        if h_time[parent] < t or (h_time[parent] == t and h_seq[parent] < seq):
            break
        h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = (
            h_time[parent],
            h_seq[parent],
            h_kind[parent],
            h_slot[parent],
            h_aux[parent],
        )
        i = parent
    h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = t, seq, kind, slot, aux


@njit(inline="always", error_model="numpy")
def heap_pop(p):  # type: ignore[no-untyped-def]
    """Remove the first event (the caller reads it at index 0 first)."""
    h_time, h_seq, h_kind, h_slot, h_aux, ints = p.h_time, p.h_seq, p.h_kind, p.h_slot, p.h_aux, p.ints
    n = ints[I_HEAP_N] - 1
    ints[I_HEAP_N] = n
    if n == 0:
        return
    t, seq, kind, slot, aux = h_time[n], h_seq[n], h_kind[n], h_slot[n], h_aux[n]
    i = 0
    while True:  # sift down the last entry from the root
        child = 2 * i + 1
        if child >= n:
            break
        right = child + 1
        if right < n and (
            h_time[right] < h_time[child] or (h_time[right] == h_time[child] and h_seq[right] < h_seq[child])
        ):
            child = right
        if t < h_time[child] or (t == h_time[child] and seq < h_seq[child]):
            break
        h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = (
            h_time[child],
            h_seq[child],
            h_kind[child],
            h_slot[child],
            h_aux[child],
        )
        i = child
    h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = t, seq, kind, slot, aux
