"""The LLM data plane's state: numpy arrays in a NamedTuple (numba passes it to the kernel as one
argument), allocated and grown by Python between kernel calls, and the layout of its scalar arrays.

Three kinds of rows:
- *replica slots* (`S`): an engine replica's waiting queue (a ring), its running list (in admission
  order: the last is the first preempted), its step in progress and its share of the KV blocks
  (slot s owns blocks [s·B, (s+1)·B) of the block arrays). A replica takes a free slot when it
  becomes ready and gives it back when drained, so the arrays follow the fleet's peak;
- *request rows* (`R`): every request in flight (waiting or running), on a free list; its block
  table is `rq_blocks[row, :rq_nblocks[row]]`;
- *KV blocks* (`S·B`): reference count, prefix-cache key (-1: not cached), and the links of the
  replica's free queue (LRU first), plus one open-addressing table key -> block for the prefix cache.

Finished and rejected requests are written as rows of the output log (`out_*`), which Python folds
and empties when the kernel asks (NEED_FLUSH): memory stays bounded however long the run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from capsim.serving.dataplane import layout as heap_layout
from capsim.serving.dataplane.layout import I_LB_NEXT, I_LB_POS

compiled = njit(cache=True, error_model="numpy", _nrt=False)  # type: ignore[call-overload]  # an option numba's stubs omit
"""The decorator of the loop's rules (kernel.py, kvcache.py): cached on disk, numpy's error model (no
division checks) and no reference counting — the loop allocates nothing, and with counting every
call that passes the plane would count references on each of its ~60 arrays (18 µs a step)."""

# -- what `advance` returns ----------------------------------------------------------------------
RAN_TO_STOP = 0  # every event before stop_s is handled; F_NEXT holds the next event's time
NEED_ARRIVALS = 1  # the arrival chunk is used up: give the next (or set I_ARRIVALS_DONE)
NEED_FLUSH = 2  # the output log may not hold the next event's rows: fold and empty it
NEED_ROOM = 3  # no free request row, or the follow-up heap nearly full: grow them
NEED_DRAWS = 4  # the balancer's draws run low: refill them

# -- ints ------------------------------------------------------------------------------------------
assert (I_LB_NEXT, I_LB_POS) == (1, 2)  # the shared balancers read their counter and draw position here
I_N_READY = 0  # replicas in the balancer (their slots are ready[:n])
I_LB_END = 3  # draws in the balancer's buffer
I_ARR_POS = 4  # next arrival of the chunk
I_ARR_N = 5
I_ARRIVALS_DONE = 6
I_FREE_ROW = 7  # head of the free list of request rows (-1: none)
I_OUT_N = 8  # rows in the output log
I_PREEMPTIONS = 9  # preemptions of requests that arrived after warm-up
I_PENDING = 10  # 1 while some replica waits to start a step at F_CLOCK
I_RUNNING = 11  # requests running, over the fleet
I_WAITING = 12  # requests waiting (new and preempted), over the fleet
I_USED_BLOCKS = 13  # KV blocks held by requests, over the fleet
I_CAP_BLOCKS = 14  # KV blocks of the replicas in service
I_TICK = 15  # the tick bin that holds F_LEVEL_S
I_PREFIX_QUERIES = 16  # prompt tokens looked up in the prefix cache (at admission)
I_PREFIX_HITS = 17  # of which found cached
I_STEPS = 18  # engine steps run
I_BUSY = 19  # replicas with a step in progress
I_MAX_BATCH = 20  # most requests running when a step starts (the batch, budget permitting)
I_ARRIVED = 21  # requests arrived (new and follow-up turns), cumulative: an autoscaler's rate
N_INTS = 22

# -- floats ----------------------------------------------------------------------------------------
F_CLOCK = 0  # time of the event being handled
F_NEXT = 1  # time of the next event after RAN_TO_STOP (inf: none)
F_LEVEL_S = 2  # the levels below are integrated up to here
N_FLOATS = 3

# -- cfg_i / cfg_f ---------------------------------------------------------------------------------
C_MAX_SEQS = 0
C_MAX_TOKENS = 1  # max_num_batched_tokens
C_CHUNKED = 2
C_BLOCK = 3  # block_size, tokens
C_BLOCKS = 4  # KV blocks per replica
C_PREFIX = 5  # 1: prefix caching on
C_MAX_LEN = 6  # max_model_len
C_BALANCER = 7
C_LB_DRAWS = 8  # draws one pick may take
C_KEY_W = 9  # block indexes per prefix key (ceil(max_model_len / block_size) + 1)
N_CFG_I = 10
C_WARMUP_S = 0
C_HIST_MIN = 1  # the ITL histogram's LogHistogram.min_value and log gamma
C_HIST_LOG_GAMMA = 2
C_ARRIVALS_END_S = 3  # a session's follow-up turn due at or after this is not sent (duration_s)
N_CFG_F = 4

# -- levels (rows of `areas`) -----------------------------------------------------------------------
L_RUNNING = 0
L_WAITING = 1
L_USED_BLOCKS = 2
L_CAP_BLOCKS = 3
L_BUSY = 4
N_LEVELS = 5

# -- ITL statistics (itl_stats) --------------------------------------------------------------------
H_COUNT = 0
H_SUM = 1
H_MAX = 2
H_MIN = 3
H_ZERO = 4  # gaps <= the histogram's min_value

# slot states
FREE = 0
READY = 1
DRAINING = 2  # out of the balancer, finishing its requests
DRAINED = 3  # finished at drained_s[slot]; Python books it and frees the slot

# outcomes, as in capsim.metrics.request_log
COMPLETED = 1
REJECTED = 2

MAX_SLOTS = 4096  # prefix keys pack the slot in 12 bits
DRAW_CHUNK = 4096


class FollowUps(NamedTuple):
    """The sessions' follow-up turns due, as the real-time plane's event heap
    (capsim/serving/dataplane/heap.py, ordered by time then push order): `h_slot` the turn, `h_aux`
    its prefix key; `ints` holds the heap's size and push count at that module's I_HEAP_N / I_SEQ."""

    h_time: np.ndarray
    h_seq: np.ndarray
    h_kind: np.ndarray
    h_slot: np.ndarray
    h_aux: np.ndarray
    ints: np.ndarray


def follow_ups(capacity: int) -> FollowUps:
    """An empty heap of follow-up turns."""
    i64 = np.int64
    return FollowUps(np.zeros(capacity), np.zeros(capacity, dtype=i64), np.zeros(capacity, dtype=i64),
                     np.zeros(capacity, dtype=i64), np.zeros(capacity, dtype=i64),
                     np.zeros(heap_layout.N_INTS, dtype=i64))  # fmt: skip


class LlmPlane(NamedTuple):
    """Every array the kernel reads or writes, except the arrival chunk."""

    ints: np.ndarray
    floats: np.ndarray
    cfg_i: np.ndarray
    cfg_f: np.ndarray
    step_params: np.ndarray  # capsim.servicetime.llm_step.step_params
    # replica slots
    slot_state: np.ndarray
    slot_replica: np.ndarray  # replica index (its id in the output rows)
    ready: np.ndarray  # the balancer's slots
    loads: np.ndarray  # waiting + running: what the balancer reads
    wait_q: np.ndarray  # (S, R): ring buffers of request rows
    wait_head: np.ndarray
    wait_len: np.ndarray
    run_q: np.ndarray  # (S, max_num_seqs): running request rows in admission order
    run_n: np.ndarray
    pending: np.ndarray  # 1: start a step at F_CLOCK
    step_end_s: np.ndarray  # inf: no step in progress
    drained_s: np.ndarray  # when a DRAINING slot finished its last request
    free_head: np.ndarray  # the slot's free block queue (LRU first), its tail and length
    free_tail: np.ndarray
    free_n: np.ndarray
    # KV blocks (S * B)
    blk_ref: np.ndarray
    blk_key: np.ndarray
    blk_prev: np.ndarray
    blk_next: np.ndarray
    ht_key: np.ndarray  # the prefix cache's table (open addressing, -1 empty)
    ht_blk: np.ndarray
    # request rows (R)
    rq_id: np.ndarray
    rq_arrival_s: np.ndarray
    rq_prompt: np.ndarray
    rq_output: np.ndarray  # output tokens it will generate
    rq_key: np.ndarray  # its prefix key (a session's: shared by its turns)
    rq_slot: np.ndarray
    rq_generated: np.ndarray
    rq_computed: np.ndarray  # vLLM's num_computed_tokens
    rq_sched: np.ndarray  # tokens scheduled in the step in progress
    rq_nblocks: np.ndarray
    rq_cached: np.ndarray  # its leading blocks with a prefix-cache key
    rq_preempted: np.ndarray
    rq_first_sched_s: np.ndarray
    rq_first_token_s: np.ndarray
    rq_last_token_s: np.ndarray
    rq_next: np.ndarray  # free list link
    rq_blocks: np.ndarray  # (R, blocks per request)
    # output rows
    out_id: np.ndarray
    out_arrival_s: np.ndarray
    out_first_sched_s: np.ndarray
    out_first_token_s: np.ndarray
    out_end_s: np.ndarray
    out_prompt: np.ndarray
    out_output: np.ndarray
    out_replica: np.ndarray
    out_outcome: np.ndarray
    out_preempted: np.ndarray
    # statistics folded in the loop
    ticks: np.ndarray  # bin k of `areas` covers [ticks[k-1], ticks[k]); the last one what lies beyond
    areas: np.ndarray  # (N_LEVELS, ticks + 1): time integrals of the levels
    itl_counts: np.ndarray  # the ITL histogram's buckets (LogHistogram's rule, seconds)
    itl_stats: np.ndarray  # H_COUNT, H_SUM, H_MAX, H_MIN, H_ZERO
    lb_draws: np.ndarray
    # multi-turn sessions (empty arrays without them): per turn, flat over sessions (request id = turn)
    turn_prompt: np.ndarray
    turn_output: np.ndarray
    turn_think_s: np.ndarray  # wait between the previous turn's completion and this turn
    turn_next: np.ndarray  # the session's next turn (-1: the last)
    fu: FollowUps


OUT_COLUMNS = ("id", "arrival_s", "first_sched_s", "first_token_s", "end_s", "prompt", "output", "replica",
               "outcome", "preempted")  # fmt: skip
"""The output log's columns (LlmPlane.out_<name>)."""


def _hash_capacity(blocks: int) -> int:
    return 1 << max(4, int(2 * blocks - 1).bit_length())


def allocate(
    cfg_i: np.ndarray,
    cfg_f: np.ndarray,
    step_params: np.ndarray,
    ticks: np.ndarray,
    itl_buckets: int,
    slots: int,
    rows: int = 1024,
    blocks_per_request: int = 64,
    out_rows: int = 8192,
    turns: tuple[np.ndarray, ...] | None = None,
) -> LlmPlane:
    """A fresh plane: every slot free, every request row on the free list. `turns`: the sessions'
    (prompt, output, think_s, next) per turn, when the workload has sessions."""
    i64 = np.int64
    ints = np.zeros(N_INTS, dtype=i64)
    floats = np.zeros(N_FLOATS)
    floats[F_NEXT] = np.inf
    blocks = slots * int(cfg_i[C_BLOCKS])
    table = _hash_capacity(blocks)
    seqs = int(cfg_i[C_MAX_SEQS])
    rq_next = np.arange(1, rows + 1, dtype=i64)
    rq_next[-1] = -1
    stats = np.zeros(5)
    stats[H_MAX], stats[H_MIN] = -np.inf, np.inf
    return LlmPlane(
        ints=ints, floats=floats, cfg_i=cfg_i, cfg_f=cfg_f, step_params=step_params,
        slot_state=np.zeros(slots, dtype=i64), slot_replica=np.full(slots, -1, dtype=i64),
        ready=np.zeros(slots, dtype=i64), loads=np.zeros(slots, dtype=i64),
        wait_q=np.zeros((slots, rows), dtype=i64), wait_head=np.zeros(slots, dtype=i64),
        wait_len=np.zeros(slots, dtype=i64), run_q=np.zeros((slots, seqs), dtype=i64),
        run_n=np.zeros(slots, dtype=i64), pending=np.zeros(slots, dtype=i64), step_end_s=np.full(slots, np.inf),
        drained_s=np.full(slots, np.nan),
        free_head=np.full(slots, -1, dtype=i64), free_tail=np.full(slots, -1, dtype=i64),
        free_n=np.zeros(slots, dtype=i64),
        blk_ref=np.zeros(blocks, dtype=i64), blk_key=np.full(blocks, -1, dtype=i64),
        blk_prev=np.full(blocks, -1, dtype=i64), blk_next=np.full(blocks, -1, dtype=i64),
        ht_key=np.full(table, -1, dtype=i64), ht_blk=np.zeros(table, dtype=i64),
        rq_id=np.zeros(rows, dtype=i64), rq_arrival_s=np.zeros(rows), rq_prompt=np.zeros(rows, dtype=i64),
        rq_output=np.zeros(rows, dtype=i64), rq_key=np.zeros(rows, dtype=i64), rq_slot=np.zeros(rows, dtype=i64),
        rq_generated=np.zeros(rows, dtype=i64), rq_computed=np.zeros(rows, dtype=i64),
        rq_sched=np.zeros(rows, dtype=i64), rq_nblocks=np.zeros(rows, dtype=i64),
        rq_cached=np.zeros(rows, dtype=i64), rq_preempted=np.zeros(rows, dtype=i64),
        rq_first_sched_s=np.zeros(rows), rq_first_token_s=np.zeros(rows), rq_last_token_s=np.zeros(rows),
        rq_next=rq_next, rq_blocks=np.zeros((rows, blocks_per_request), dtype=np.int32),
        out_id=np.zeros(out_rows, dtype=i64), out_arrival_s=np.zeros(out_rows),
        out_first_sched_s=np.zeros(out_rows), out_first_token_s=np.zeros(out_rows), out_end_s=np.zeros(out_rows),
        out_prompt=np.zeros(out_rows, dtype=i64), out_output=np.zeros(out_rows, dtype=i64),
        out_replica=np.zeros(out_rows, dtype=i64), out_outcome=np.zeros(out_rows, dtype=i64),
        out_preempted=np.zeros(out_rows, dtype=i64),
        ticks=ticks, areas=np.zeros((N_LEVELS, ticks.size + 1)),
        itl_counts=np.zeros(itl_buckets, dtype=i64), itl_stats=stats,
        lb_draws=np.zeros(DRAW_CHUNK + 2),
        turn_prompt=turns[0] if turns else np.zeros(0, dtype=i64),
        turn_output=turns[1] if turns else np.zeros(0, dtype=i64),
        turn_think_s=turns[2] if turns else np.zeros(0),
        turn_next=turns[3] if turns else np.zeros(0, dtype=i64),
        fu=follow_ups(max(2 * seqs + 2, 256)),
    )  # fmt: skip


def _grown(old: np.ndarray, shape: tuple[int, ...], fill: float | int) -> np.ndarray:
    new = np.full(shape, fill, dtype=old.dtype)
    new[tuple(slice(0, n) for n in old.shape)] = old
    return new


_RQ_FIELDS = ("rq_id", "rq_arrival_s", "rq_prompt", "rq_output", "rq_key", "rq_slot", "rq_generated",
              "rq_computed", "rq_sched", "rq_nblocks", "rq_cached", "rq_preempted", "rq_first_sched_s",
              "rq_first_token_s", "rq_last_token_s")  # fmt: skip


def with_more_rows(p: LlmPlane) -> LlmPlane:
    """Twice the request rows (the new ones on the free list) and waiting rings to match, each ring
    unrolled to start at 0."""
    rows = p.rq_id.shape[0]
    grow: dict[str, object] = {name: _grown(getattr(p, name), (2 * rows,), 0) for name in _RQ_FIELDS}
    rq_next = np.concatenate([p.rq_next, np.arange(rows + 1, 2 * rows + 1, dtype=np.int64)])
    rq_next[-1] = p.ints[I_FREE_ROW]
    p.ints[I_FREE_ROW] = rows
    slots = p.wait_q.shape[0]
    wait_q = np.zeros((slots, 2 * rows), dtype=np.int64)
    for s in range(slots):
        n = int(p.wait_len[s])
        wait_q[s, :n] = p.wait_q[s, (int(p.wait_head[s]) + np.arange(n)) % rows]
    p.wait_head[:] = 0
    blocks = _grown(p.rq_blocks, (2 * rows, p.rq_blocks.shape[1]), 0)
    return p._replace(**grow, rq_next=rq_next, wait_q=wait_q, rq_blocks=blocks)  # type: ignore[arg-type]


_SLOT_FIELDS = (("slot_state", FREE), ("slot_replica", -1), ("ready", 0), ("loads", 0), ("wait_q", 0),
                ("wait_head", 0), ("wait_len", 0), ("run_q", 0), ("run_n", 0), ("pending", 0),
                ("step_end_s", np.inf), ("drained_s", np.nan), ("free_head", -1), ("free_tail", -1),
                ("free_n", 0))  # fmt: skip


def with_more_slots(p: LlmPlane) -> LlmPlane:
    """Twice the replica slots (the new ones free, their blocks appended after the old ones, so
    block ids keep their meaning) and a prefix-cache table sized for them, its entries re-inserted
    by `rebuild_table` (capsim/serving/llm/kvcache.py) — the caller's job, as it is compiled."""
    slots = 2 * p.slot_state.shape[0]
    grow: dict[str, object] = {name: _grown(getattr(p, name), (slots, *getattr(p, name).shape[1:]), fill)
                               for name, fill in _SLOT_FIELDS}  # fmt: skip
    blocks = slots * int(p.cfg_i[C_BLOCKS])
    for name, fill in (("blk_ref", 0), ("blk_key", -1), ("blk_prev", -1), ("blk_next", -1)):
        grow[name] = _grown(getattr(p, name), (blocks,), fill)
    table = _hash_capacity(blocks)
    table_key, table_blk = np.full(table, -1, dtype=np.int64), np.zeros(table, dtype=np.int64)
    return p._replace(**grow, ht_key=table_key, ht_blk=table_blk)  # type: ignore[arg-type]


def with_more_follow_ups(p: LlmPlane) -> LlmPlane:
    """Twice the room in the follow-up heap."""
    size = 2 * p.fu.h_time.shape[0]
    fu = p.fu._replace(**{name: _grown(getattr(p.fu, name), (size,), 0)
                          for name in ("h_time", "h_seq", "h_kind", "h_slot", "h_aux")})  # fmt: skip
    return p._replace(fu=fu)


def with_wider_block_tables(p: LlmPlane, blocks_per_request: int) -> LlmPlane:
    """Block tables of at least `blocks_per_request` entries."""
    width = max(blocks_per_request, 2 * p.rq_blocks.shape[1])
    return p._replace(rq_blocks=_grown(p.rq_blocks, (p.rq_blocks.shape[0], width), 0))


def emptied_output(p: LlmPlane) -> dict[str, np.ndarray]:
    """Copies of the output log's rows, which the kernel may then overwrite (I_OUT_N reset to 0)."""
    n = int(p.ints[I_OUT_N])
    rows = {name: getattr(p, f"out_{name}")[:n].copy() for name in OUT_COLUMNS}
    p.ints[I_OUT_N] = 0
    return rows
