"""The per-slot state of the pull-mode compiled loops (streaming consumers, and the async queue's
workers, which import it from here): a slot is one member's row in the loop's arrays, reused after
the member leaves. Python grows the arrays when a member finds no free slot and refills a slot's
service-time draws when the loop asks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.serving.dataplane.plane import DRAW_CHUNK, refilled


def with_more_slots(state: Any, per_slot: tuple[str, ...]) -> Any:
    """The same state (a NamedTuple of arrays) with twice the slots in the arrays named `per_slot`;
    the new rows are zero (phase 0 is a free slot in both loops)."""
    grown = {}
    for name in per_slot:
        old = getattr(state, name)
        new = np.zeros((2 * old.shape[0], *old.shape[1:]), dtype=old.dtype)
        new[: old.shape[0]] = old
        grown[name] = new
    return state._replace(**grown)


def refill_draws(state: Any, slot: int, rng: np.random.Generator, method: str) -> None:
    """The slot's next 4,096 service-time draws from the member's stream, appended after its unused
    ones: the chunks the SimPy samplers drew (capsim.rng.buffered), so the sample path is theirs."""
    fresh = getattr(rng, method)(DRAW_CHUNK)
    pos, end = int(state.draw_pos[slot]), int(state.draw_end[slot])
    state.draw_end[slot] = refilled(state.draws[slot], pos, end, fresh)
    state.draw_pos[slot] = 0
