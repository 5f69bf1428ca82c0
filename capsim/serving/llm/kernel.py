"""The LLM engine's data plane compiled with numba: arrivals, routing, vLLM's step scheduler,
token emission and completion, event by event, with the rules docs/model.md ("LLM serving") states.
The control plane (replica lifecycle, autoscalers, billing) stays in Python on SimPy and advances
this loop up to its next event with `advance`; the KV block pool is capsim/serving/llm/kvcache.py.

Each rule is one function below:
- `too_long` — which requests are refused at arrival;
- `arrive` — routing (the shared balancers) and `admit` to the replica's waiting queue;
- `schedule_step` — one step of vLLM V1's `Scheduler.schedule()`: running requests first, then
  waiting ones, under `max_num_seqs` and `max_num_batched_tokens`, with chunked prefill on or off;
- `preempt` — recompute preemption of the last running request;
- `start_step` — a step's duration from `llm_step_time_s`;
- `finish_step` — tokens emitted at the step's end, completions;
- `next_turn` — a session's follow-up turn, due a think time after the previous turn completed;
- `add_levels`, `itl_bucket` / `fold_itl` — statistics folded as the loop goes.

Timing (issue 15): a step that brings a request's computed tokens up to its known tokens (prompt +
generated) emits one token at the step's end — the first at the end of the step that processes the
last prompt token, then one per step; a request completes at the end of the step producing its last
token. A replica with no step in progress starts one at the instant work arrives, after every
request arriving at that same instant has joined; a busy one starts its next step when the current
one ends, after the requests arriving at that instant have joined.
"""

from __future__ import annotations

import math
from pathlib import Path

from numba import njit

from capsim.metrics.histogram import bucket_index
from capsim.servicetime.llm_step import attention_pairs_of, llm_step_time_s
from capsim.serving.dataplane.compiled_cache import drop_stale_cache
from capsim.serving.dataplane.heap import heap_pop, heap_push
from capsim.serving.dataplane.layout import I_HEAP_N
from capsim.serving.dataplane.rules import _balance  # the registered balancers, compiled once
from capsim.serving.llm.kvcache import allocate_blocks, free_blocks, match_prefix
from capsim.serving.llm.plane import (
    C_ARRIVALS_END_S,
    C_BALANCER,
    C_BLOCK,
    C_BLOCKS,
    C_CHUNKED,
    C_HIST_LOG_GAMMA,
    C_HIST_MIN,
    C_LB_DRAWS,
    C_MAX_LEN,
    C_MAX_SEQS,
    C_MAX_TOKENS,
    C_WARMUP_S,
    COMPLETED,
    DRAINED,
    DRAINING,
    F_CLOCK,
    F_LEVEL_S,
    F_NEXT,
    H_COUNT,
    H_MAX,
    H_MIN,
    H_SUM,
    H_ZERO,
    I_ARR_N,
    I_ARR_POS,
    I_ARRIVALS_DONE,
    I_ARRIVED,
    I_BUSY,
    I_CAP_BLOCKS,
    I_FREE_ROW,
    I_LB_END,
    I_LB_POS,
    I_MAX_BATCH,
    I_N_READY,
    I_OUT_N,
    I_PENDING,
    I_PREEMPTIONS,
    I_PREFIX_HITS,
    I_PREFIX_QUERIES,
    I_RUNNING,
    I_STEPS,
    I_TICK,
    I_USED_BLOCKS,
    I_WAITING,
    L_BUSY,
    L_CAP_BLOCKS,
    L_RUNNING,
    L_USED_BLOCKS,
    L_WAITING,
    NEED_ARRIVALS,
    NEED_DRAWS,
    NEED_FLUSH,
    NEED_ROOM,
    RAN_TO_STOP,
    REJECTED,
    compiled,
)
from capsim.serving.llm.routers import compiled_route

# numba keys this module's cache on this file alone: drop it when what it compiles in changed.
_COMPILED_IN = ("kvcache.py", "plane.py", "routers.py", "../../servicetime/llm_step.py", "../dataplane/balancers.py",
                "../dataplane/rules.py", "../dataplane/heap.py")
drop_stale_cache(Path(__file__).parent, "kernel", _COMPILED_IN)

_bucket = njit(cache=True)(bucket_index)
route = compiled_route()  # the LLM routers (KV load, prefix affinity), compiled once


# -- statistics ------------------------------------------------------------------------------------


@compiled
def add_levels(p, now):  # type: ignore[no-untyped-def]
    """Integrate the fleet's levels (running, waiting, KV blocks used and in service, busy replicas), constant
    since F_LEVEL_S, up to `now`, split over the tick bins."""
    ints, floats, ticks, areas = p.ints, p.floats, p.ticks, p.areas
    t0 = floats[F_LEVEL_S]
    k = ints[I_TICK]
    while t0 < now:
        end = ticks[k] if k < ticks.shape[0] else math.inf
        t1 = min(end, now)
        dt = t1 - t0
        areas[L_RUNNING, k] += ints[I_RUNNING] * dt
        areas[L_WAITING, k] += ints[I_WAITING] * dt
        areas[L_USED_BLOCKS, k] += ints[I_USED_BLOCKS] * dt
        areas[L_CAP_BLOCKS, k] += ints[I_CAP_BLOCKS] * dt
        areas[L_BUSY, k] += ints[I_BUSY] * dt
        t0 = t1
        if t1 == end:
            k += 1
    ints[I_TICK] = k
    floats[F_LEVEL_S] = max(now, floats[F_LEVEL_S])


@compiled
def itl_bucket(p, gap_s):  # type: ignore[no-untyped-def]
    """The ITL histogram's bucket of a gap in seconds (LogHistogram's rule; -1: at or below its
    minimum value)."""
    min_value = p.cfg_f[C_HIST_MIN]
    if gap_s <= min_value:
        return -1
    i = int(_bucket(gap_s, min_value, p.cfg_f[C_HIST_LOG_GAMMA]))
    return min(i, p.itl_counts.shape[0] - 1)  # (sized for the run's horizon: never reached)


@compiled
def fold_itl(p, gap_s, bucket, count, gaps_sum_s):  # type: ignore[no-untyped-def]
    """Add `count` inter-token gaps of `gap_s` (and its `itl_bucket`) to the ITL statistics, whose
    sum of gaps the caller has already added up one gap at a time into `gaps_sum_s` (the same
    sequence of float additions as folding them one by one, so the mean does not depend on batching)."""
    st = p.itl_stats
    st[H_COUNT] += count
    st[H_SUM] = gaps_sum_s
    st[H_MAX] = max(st[H_MAX], gap_s)
    st[H_MIN] = min(st[H_MIN], gap_s)
    if bucket < 0:
        st[H_ZERO] += count
    else:
        p.itl_counts[bucket] += count


@compiled
def write_row(p, row, now, outcome, replica):  # type: ignore[no-untyped-def]
    """One output row for a finished (COMPLETED) or refused (REJECTED) request."""
    n = p.ints[I_OUT_N]
    p.out_id[n] = p.rq_id[row]
    p.out_arrival_s[n] = p.rq_arrival_s[row]
    p.out_first_sched_s[n] = p.rq_first_sched_s[row]
    p.out_first_token_s[n] = p.rq_first_token_s[row]
    p.out_end_s[n] = now
    p.out_prompt[n] = p.rq_prompt[row]
    p.out_output[n] = p.rq_output[row]
    p.out_replica[n] = replica
    p.out_outcome[n] = outcome
    p.out_preempted[n] = p.rq_preempted[row]
    p.ints[I_OUT_N] = n + 1


@njit(cache=True, inline="always")
def _release_row(p, row):  # type: ignore[no-untyped-def]
    p.rq_next[row] = p.ints[I_FREE_ROW]
    p.ints[I_FREE_ROW] = row


# -- arrivals --------------------------------------------------------------------------------------


@compiled
def too_long(p, prompt, output):  # type: ignore[no-untyped-def]
    """Whether a request is refused at arrival: prompt + output over max_model_len (vLLM's API
    server answers 400), more KV blocks than a replica has (it could never run: vLLM refuses to
    start when max_model_len does not fit), or, without chunked prefill, more tokens than one step's
    budget (vLLM requires max_num_batched_tokens >= max_model_len then: such a prompt, or its
    recompute after a preemption, could never be scheduled)."""
    total = prompt + output
    if total > p.cfg_i[C_MAX_LEN]:
        return True
    block = p.cfg_i[C_BLOCK]
    if (total + block - 1) // block > p.cfg_i[C_BLOCKS]:
        return True
    return p.cfg_i[C_CHUNKED] == 0 and total > p.cfg_i[C_MAX_TOKENS]


@compiled
def admit(p, s, row):  # type: ignore[no-untyped-def]
    """Request `row` joins the back of slot s's waiting queue; an idle replica will start a step
    at this instant, once every request arriving now has joined."""
    cap = p.wait_q.shape[1]
    p.wait_q[s, (p.wait_head[s] + p.wait_len[s]) % cap] = row
    p.wait_len[s] += 1
    p.loads[s] += 1
    p.rq_slot[row] = s
    p.ints[I_WAITING] += 1
    if p.step_end_s[s] == math.inf:
        p.pending[s] = 1
        p.ints[I_PENDING] = 1


@compiled
def arrive(p, now, request_id, prompt, output, key):  # type: ignore[no-untyped-def]
    """A request arrives: refused (`too_long`, or no replica ready) or routed over the ready
    replicas by the scenario's balancer (load = waiting + running) or LLM router (KV use, prefix
    key) and admitted."""
    row = p.ints[I_FREE_ROW]
    p.ints[I_FREE_ROW] = p.rq_next[row]
    p.rq_id[row] = request_id
    p.rq_arrival_s[row] = now
    p.rq_prompt[row] = prompt
    p.rq_output[row] = output
    p.rq_key[row] = key
    p.rq_generated[row] = 0
    p.rq_computed[row] = 0
    p.rq_sched[row] = 0
    p.rq_nblocks[row] = 0
    p.rq_cached[row] = 0
    p.rq_preempted[row] = 0
    p.rq_first_sched_s[row] = math.nan
    p.rq_first_token_s[row] = math.nan
    p.rq_last_token_s[row] = math.nan
    p.ints[I_ARRIVED] += 1
    n = p.ints[I_N_READY]
    if n == 0 or too_long(p, prompt, output):
        write_row(p, row, now, REJECTED, -1)
        _release_row(p, row)
        return
    code = p.cfg_i[C_BALANCER]
    if n == 1:
        s = p.ready[0]
    elif code >= 0:
        s = _balance(code, p.ints, p.ready, n, p.loads, p.lb_draws)
    else:  # an LLM router (capsim/serving/llm/routers.py): code -1 - its index
        s = route(-1 - code, p, n, key)
    admit(p, s, row)


@compiled
def next_turn(p, row, now):  # type: ignore[no-untyped-def]
    """Request `row` (a session's turn: its id is the turn's index) completed at `now`: the
    session's next turn, if any, arrives its think time later — unless that is at or after the
    end of arrivals (duration_s). Its prompt carries the conversation so far (capsim/workload/
    sessions.py) under the session's prefix key, so prefix caching can skip what is still cached."""
    if p.turn_next.shape[0] == 0:
        return
    turn = p.turn_next[p.rq_id[row]]
    if turn < 0:
        return
    due_s = now + p.turn_think_s[turn]
    if due_s < p.cfg_f[C_ARRIVALS_END_S]:
        heap_push(p.fu, due_s, 0, turn, p.rq_key[row])


# -- the scheduler ---------------------------------------------------------------------------------


@compiled
def preempt(p, s, now):  # type: ignore[no-untyped-def]
    """Preempt the last of slot s's running requests (vLLM V1, FCFS: `self.running.pop()`) by
    recompute: its blocks are freed, its computed tokens reset to 0, and it goes to the front of
    the waiting queue; it keeps its generated tokens, which it recomputes with its prompt."""
    n = p.run_n[s] - 1
    row = p.run_q[s, n]
    p.run_n[s] = n
    free_blocks(p, s, row)
    p.rq_computed[row] = 0
    p.rq_sched[row] = 0
    p.rq_preempted[row] += 1
    if p.rq_arrival_s[row] >= p.cfg_f[C_WARMUP_S]:
        p.ints[I_PREEMPTIONS] += 1
    cap = p.wait_q.shape[1]
    head = (p.wait_head[s] - 1) % cap
    p.wait_head[s] = head
    p.wait_q[s, head] = row
    p.wait_len[s] += 1
    p.ints[I_RUNNING] -= 1
    p.ints[I_WAITING] += 1
    return row


@compiled
def schedule_step(p, s, now):  # type: ignore[no-untyped-def]
    """Choose the tokens of slot s's next step (vLLM V1 `Scheduler.schedule()`), recording them in
    rq_sched. Returns (prefill tokens, decoding sequences, context tokens, requests scheduled for
    the first time, (query, key) attention pairs) — what `llm_step_time_s` takes.

    1. Running requests, in admission order, each take min(known − computed tokens, budget left)
       (1 for a decode; a chunk of a prompt), until the budget is spent. If the KV blocks for them
       cannot be had, the last running request is preempted (`preempt`) and the allocation retried;
       when the request itself was the last, scheduling of running requests stops.
    2. Only if nothing was preempted: waiting requests, from the front, while fewer than
       max_num_seqs run and budget is left: a request first takes its prefix-cache hit
       (`match_prefix`), then min(uncached tokens, budget) — without chunked prefill all of them or
       nothing, and a prompt that does not fit stops admission (vLLM v0.34 `break`, FCFS). Admission
       also stops at the first request whose blocks cannot be had; nothing is preempted for it.
    A decoding sequence is one that has produced a token and is scheduled for exactly its next one;
    every other scheduled token (a prompt, or the prompt and output recomputed after a preemption)
    is a prefill token.
    """
    budget = p.cfg_i[C_MAX_TOKENS]
    block = p.cfg_i[C_BLOCK]
    prefill = 0
    decode = 0
    context = 0
    fresh = 0
    pairs = 0.0
    preempted = False
    i = 0
    while i < p.run_n[s] and budget > 0:
        row = p.run_q[s, i]
        known = p.rq_prompt[row] + p.rq_generated[row]
        n = min(known - p.rq_computed[row], budget)
        if n <= 0:
            i += 1
            continue
        scheduled = True
        while not allocate_blocks(p, s, row, 0, n):
            victim = preempt(p, s, now)
            preempted = True
            if victim == row:
                scheduled = False
                break
        if not scheduled:
            break
        p.rq_sched[row] = n
        budget -= n
        context += p.rq_computed[row] + n
        pairs += attention_pairs_of(p.rq_computed[row], n)
        if p.rq_generated[row] > 0 and n == 1 and p.rq_computed[row] + 1 == known:
            decode += 1
        else:
            prefill += n
        i += 1
    if preempted:
        return prefill, decode, context, fresh, pairs
    cap = p.wait_q.shape[1]
    warmup_s = p.cfg_f[C_WARMUP_S]
    while p.wait_len[s] > 0 and budget > 0 and p.run_n[s] < p.cfg_i[C_MAX_SEQS]:
        row = p.wait_q[s, p.wait_head[s]]
        known = p.rq_prompt[row] + p.rq_generated[row]
        hits = match_prefix(p, s, row)
        n = known - hits * block
        if p.cfg_i[C_CHUNKED] == 0 and n > budget:
            break
        n = min(n, budget)
        if not allocate_blocks(p, s, row, hits, n):
            break
        p.wait_head[s] = (p.wait_head[s] + 1) % cap
        p.wait_len[s] -= 1
        p.run_q[s, p.run_n[s]] = row
        p.run_n[s] += 1
        p.ints[I_WAITING] -= 1
        p.ints[I_RUNNING] += 1
        if p.rq_arrival_s[row] >= warmup_s:
            p.ints[I_PREFIX_QUERIES] += known
            p.ints[I_PREFIX_HITS] += hits * block
        if math.isnan(p.rq_first_sched_s[row]):
            p.rq_first_sched_s[row] = now
            fresh += 1
        p.rq_sched[row] = n
        budget -= n
        context += p.rq_computed[row] + n
        pairs += attention_pairs_of(p.rq_computed[row], n)
        prefill += n
    return prefill, decode, context, fresh, pairs


@compiled
def start_step(p, s, now):  # type: ignore[no-untyped-def]
    """Schedule slot s's next step at `now` and set when it ends (`llm_step_time_s` of what it
    holds); with nothing to schedule the replica goes idle."""
    prefill, decode, context, fresh, pairs = schedule_step(p, s, now)
    if prefill + decode == 0:
        p.step_end_s[s] = math.inf
        if p.slot_state[s] == DRAINING and p.wait_len[s] == 0:
            drained(p, s, now)
        return
    p.step_end_s[s] = now + llm_step_time_s(p.step_params, prefill, decode, context, fresh, pairs)
    p.ints[I_STEPS] += 1
    p.ints[I_BUSY] += 1
    p.ints[I_MAX_BATCH] = max(p.ints[I_MAX_BATCH], p.run_n[s])


@compiled
def finish_step(p, s, now):  # type: ignore[no-untyped-def]
    """Slot s's step ends at `now`: each scheduled request's computed tokens advance; one that has
    caught up with its known tokens emits one (the first sets its TTFT; later ones add an ITL gap);
    one that has emitted its last completes, frees its blocks and leaves. The replica then starts
    its next step at this instant, after the requests arriving now have joined."""
    p.step_end_s[s] = math.inf
    p.ints[I_BUSY] -= 1
    warmup_s = p.cfg_f[C_WARMUP_S]
    keep = 0
    # The requests that decoded in the previous step share one gap: a run of equal gaps is folded
    # at once (`fold_itl`), its bucket computed once; the sum still adds one gap at a time.
    gaps_sum_s = p.itl_stats[H_SUM]
    run_gap_s = -1.0
    run_bucket = -1
    run_count = 0
    for i in range(p.run_n[s]):
        row = p.run_q[s, i]
        n = p.rq_sched[row]
        if n > 0:
            p.rq_sched[row] = 0
            computed = p.rq_computed[row] + n
            p.rq_computed[row] = computed
            generated = p.rq_generated[row]
            if computed == p.rq_prompt[row] + generated:
                generated += 1
                p.rq_generated[row] = generated
                if generated == 1:
                    p.rq_first_token_s[row] = now
                elif p.rq_arrival_s[row] >= warmup_s:
                    gap_s = now - p.rq_last_token_s[row]
                    if gap_s != run_gap_s:
                        if run_count > 0:
                            fold_itl(p, run_gap_s, run_bucket, run_count, gaps_sum_s)
                        run_gap_s = gap_s
                        run_bucket = itl_bucket(p, gap_s)
                        run_count = 0
                    run_count += 1
                    gaps_sum_s += gap_s
                p.rq_last_token_s[row] = now
                if generated >= p.rq_output[row]:
                    write_row(p, row, now, COMPLETED, p.slot_replica[s])
                    next_turn(p, row, now)
                    free_blocks(p, s, row)
                    p.loads[s] -= 1
                    p.ints[I_RUNNING] -= 1
                    _release_row(p, row)
                    continue
        p.run_q[s, keep] = row
        keep += 1
    if run_count > 0:
        fold_itl(p, run_gap_s, run_bucket, run_count, gaps_sum_s)
    p.run_n[s] = keep
    p.pending[s] = 1
    p.ints[I_PENDING] = 1


# -- replicas leaving -------------------------------------------------------------------------------


@compiled
def start_draining(p, s, now):  # type: ignore[no-untyped-def]
    """Replica slot s leaves the balancer at `now` (a scale-in): it takes no new request and
    finishes those it holds, waiting ones included; `drained` when it has none left."""
    n = p.ints[I_N_READY]
    k = 0
    for i in range(n):
        if p.ready[i] != s:
            p.ready[k] = p.ready[i]
            k += 1
    p.ints[I_N_READY] = k
    p.slot_state[s] = DRAINING
    if p.step_end_s[s] == math.inf and p.pending[s] == 0 and p.wait_len[s] == 0 and p.run_n[s] == 0:
        drained(p, s, now)


@compiled
def drained(p, s, now):  # type: ignore[no-untyped-def]
    """A draining replica has finished its last request at `now`: its KV blocks leave the fleet's
    capacity; Python books the time (drained_s) and frees the slot."""
    add_levels(p, now)
    p.slot_state[s] = DRAINED
    p.drained_s[s] = now
    p.ints[I_CAP_BLOCKS] -= p.cfg_i[C_BLOCKS]


# -- the loop ---------------------------------------------------------------------------------------


@compiled
def advance(p, arr_t, arr_prompt, arr_output, arr_key, arr_id, stop_s):  # type: ignore[no-untyped-def]
    """Handle every data-plane event before `stop_s` in time order — at one instant, step ends
    first, then arrivals (new ones, then sessions' follow-up turns), then the steps that start — or
    return earlier when Python must act
    (NEED_ARRIVALS, NEED_FLUSH, NEED_ROOM, NEED_DRAWS: nothing is half done then)."""
    ints, floats = p.ints, p.floats
    slots = p.slot_state.shape[0]
    out_cap = p.out_id.shape[0]
    max_seqs = p.cfg_i[C_MAX_SEQS]
    lb_draws = p.cfg_i[C_LB_DRAWS]
    while True:
        if ints[I_OUT_N] + max_seqs + 1 > out_cap:
            return NEED_FLUSH
        if ints[I_FREE_ROW] < 0 or p.fu.ints[I_HEAP_N] + max_seqs + 1 > p.fu.h_time.shape[0]:
            return NEED_ROOM
        if lb_draws > 0 and ints[I_LB_POS] + lb_draws > ints[I_LB_END]:
            return NEED_DRAWS
        pos = ints[I_ARR_POS]
        if pos < ints[I_ARR_N]:
            t_arr = arr_t[pos]
        elif ints[I_ARRIVALS_DONE]:
            t_arr = math.inf
        else:
            return NEED_ARRIVALS
        follow_up = p.fu.ints[I_HEAP_N] > 0 and p.fu.h_time[0] < t_arr  # a new session goes first at a tie
        if follow_up:
            t_arr = p.fu.h_time[0]
        t_step = math.inf
        s_step = -1
        for s in range(slots):
            if p.step_end_s[s] < t_step:
                t_step = p.step_end_s[s]
                s_step = s
        t_next = min(t_arr, t_step)
        now = floats[F_CLOCK]
        if ints[I_PENDING] and t_next > now:
            ints[I_PENDING] = 0
            for s in range(slots):
                if p.pending[s]:
                    p.pending[s] = 0
                    start_step(p, s, now)
            continue
        if t_next >= stop_s:
            floats[F_NEXT] = t_next
            return RAN_TO_STOP
        if t_step <= t_arr:
            floats[F_CLOCK] = t_step
            add_levels(p, t_step)
            finish_step(p, s_step, t_step)
        elif follow_up:
            floats[F_CLOCK] = t_arr
            add_levels(p, t_arr)
            turn, key = p.fu.h_slot[0], p.fu.h_aux[0]
            heap_pop(p.fu)
            arrive(p, t_arr, turn, p.turn_prompt[turn], p.turn_output[turn], key)
        else:
            floats[F_CLOCK] = t_arr
            add_levels(p, t_arr)
            ints[I_ARR_POS] = pos + 1
            arrive(p, t_arr, arr_id[pos], arr_prompt[pos], arr_output[pos], arr_key[pos])
