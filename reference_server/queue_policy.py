"""How long a request may wait in the batcher's queue, and how many may wait, when not told.

The bound is Triton's dynamic-batcher queue policy with `timeout_action: REJECT`
(`default_timeout_microseconds`, `max_queue_size`) and the simulator's `timeout_ms` /
`queue_capacity` (docs/model.md): a request still queued at `arrival + timeout` leaves the queue at
that moment (504); one that finds `queue_capacity` requests waiting is rejected at once (429). The
batcher applies those rules (`batcher.py`); this module only picks their defaults.

Triton's defaults are "no timeout" and "no limit", and so were this server's: under ten times the
load it can serve, every accepted request waited behind everything queued before it, seconds to
tens of seconds, and after the burst the backlog took as long again to drain. With a bound, an
accepted request waits at most the bound, and the server is back to normal one bound after the
burst ends.

Defaults, from the batch time the server measures at start-up (`max_batch_s`: the median time of a
`max_batch_size` batch, `--extra-latency-ms` included):

- timeout = max(`QUEUE_DELAY_FLOOR_S`, `QUEUE_DELAY_BATCHES` × max_batch_s + max_wait_s): ten
  full batches' worth of waiting — at 80% load a FIFO queue of this kind rarely waits that long, so
  the bound only bites under overload — and never under 100 ms, so that a fast model's bound is not
  set by the host's scheduling hiccups (a stalled event loop expires every request that waited
  through the stall; on the shared 2-vCPU development VM stalls of 50-80 ms were common);
- queue capacity = the requests the executors can start within the timeout
  (⌈timeout / max_batch_s⌉ × max_batch_size × instances), at most `MAX_AUTO_QUEUE_CAPACITY`: a request
  that finds more waiting would time out anyway, so it is told at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUEUE_DELAY_BATCHES = 10
QUEUE_DELAY_FLOOR_S = 0.100
MAX_AUTO_QUEUE_CAPACITY = 1024  # the server's fixed default before the queue was bounded in time


@dataclass(frozen=True)
class QueueBounds:
    """The queue's bounds in force (None: no timeout) and whether each was chosen by the server."""

    timeout_s: float | None
    queue_capacity: int
    timeout_auto: bool
    capacity_auto: bool


def default_timeout_s(max_batch_s: float, max_wait_s: float) -> float:
    """The queue timeout when none is given (see the module docstring)."""
    return max(QUEUE_DELAY_FLOOR_S, QUEUE_DELAY_BATCHES * max_batch_s + max_wait_s)


def default_queue_capacity(timeout_s: float | None, max_batch_s: float, max_batch_size: int, instances: int) -> int:
    """The queue capacity when none is given: what the executors can start within `timeout_s`."""
    if timeout_s is None:
        return MAX_AUTO_QUEUE_CAPACITY
    batches = math.ceil(timeout_s / max(max_batch_s, 1e-6))
    return max(max_batch_size, min(MAX_AUTO_QUEUE_CAPACITY, batches * max_batch_size * instances))


def resolve_queue_bounds(
    timeout_ms: float | None,
    queue_capacity: int | None,
    *,
    max_batch_s: float,
    max_wait_s: float,
    max_batch_size: int,
    instances: int,
) -> QueueBounds:
    """The bounds in force: the given ones (`timeout_ms` 0 = none), the defaults for those not given."""
    if timeout_ms is None:
        timeout_s: float | None = default_timeout_s(max_batch_s, max_wait_s)
    else:
        timeout_s = timeout_ms / 1e3 if timeout_ms > 0 else None
    capacity = (
        queue_capacity
        if queue_capacity is not None
        else default_queue_capacity(timeout_s, max_batch_s, max_batch_size, instances)
    )
    return QueueBounds(timeout_s, capacity, timeout_ms is None, queue_capacity is None)
