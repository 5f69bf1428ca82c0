"""Paging through a ring of numbered records (`?since=ID&limit=N`), for any integer the client sends."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def page_after(ring: Sequence[T], first_id: int, after_id: int, limit: int | None = None) -> list[T]:
    """The records of `ring` (numbered consecutively from `first_id`) with ids above `after_id`, at
    most `limit` of them (None: all; negative: none). Out-of-range values clamp to the ring rather
    than reach `itertools.islice`, which refuses anything past `sys.maxsize`."""
    size = len(ring)
    skip = min(size, max(0, after_id - first_id + 1))
    stop = size if limit is None else min(size, skip + max(0, limit))
    return list(itertools.islice(ring, skip, stop))
