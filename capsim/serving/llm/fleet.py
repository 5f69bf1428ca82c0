"""The LLM fleet's Python side: it owns the compiled plane (capsim/serving/llm/kernel.py), feeds it
arrival chunks with their token counts, answers its requests (more rows, refilled balancer draws,
an output log to fold) and puts replicas into service.

The control plane (SimPy processes: an autoscaler, the progress clock, a replica becoming ready)
calls `advance_to(t)` before it reads or changes the fleet at time t: the kernel then handles every
data-plane event before t, so nothing the control plane does can fall between two of them. A
replica joins with `add_replica` (a free slot, its KV blocks all free) and leaves with
`kernel.start_draining`; capsim/serving/llm/pool.py drives both under an autoscaler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.dataplane.layout import I_HEAP_N
from capsim.serving.llm import kernel as k
from capsim.serving.llm.kvcache import init_slot_blocks, rebuild_table
from capsim.serving.llm.metrics import itl_buckets, itl_histogram
from capsim.serving.llm.plane import (
    C_ARRIVALS_END_S,
    C_BALANCER,
    C_BLOCK,
    C_BLOCKS,
    C_CHUNKED,
    C_HIST_LOG_GAMMA,
    C_HIST_MIN,
    C_KEY_W,
    C_LB_DRAWS,
    C_MAX_LEN,
    C_MAX_SEQS,
    C_MAX_TOKENS,
    C_PREFIX,
    C_WARMUP_S,
    DRAW_CHUNK,
    F_CLOCK,
    F_NEXT,
    FREE,
    I_ARR_N,
    I_ARR_POS,
    I_ARRIVALS_DONE,
    I_CAP_BLOCKS,
    I_FREE_ROW,
    I_LB_END,
    I_LB_POS,
    I_N_READY,
    I_RUNNING,
    I_WAITING,
    MAX_SLOTS,
    N_CFG_F,
    N_CFG_I,
    NEED_ARRIVALS,
    NEED_DRAWS,
    NEED_FLUSH,
    NEED_ROOM,
    READY,
    LlmPlane,
    allocate,
    emptied_output,
    with_more_follow_ups,
    with_more_rows,
    with_more_slots,
    with_wider_block_tables,
)
from capsim.serving.llm.routers import balancer_code


class ArrivalChunk(NamedTuple):
    """Requests in arrival order: times (s), prompt and output tokens, prefix keys and ids."""

    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    key: np.ndarray
    request_id: np.ndarray


class Sessions(NamedTuple):
    """Every turn of the run's sessions, flat (a turn's index is its request id): prompt and output
    tokens, think time before it, and the session's next turn (-1 after the last)."""

    prompt: np.ndarray
    output: np.ndarray
    think_s: np.ndarray
    next_turn: np.ndarray


class EngineSettings(NamedTuple):
    """One replica's scheduler and cache, resolved (capsim.serving.llm.spec.LlmScheduler's fields
    with vLLM's defaults filled in)."""

    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool
    block_size: int
    kv_cache_blocks: int
    enable_prefix_caching: bool
    max_model_len: int


def new_plane(
    engine: EngineSettings,
    step_params: np.ndarray,
    *,
    load_balancer: str,
    slots: int,
    ticks: np.ndarray,
    warmup_s: float,
    horizon_s: float,
    arrivals_end_s: float = np.inf,
    turns: Sessions | None = None,
) -> LlmPlane:
    """An empty plane for up to `slots` replicas of `engine`, statistics binned at `ticks`, gaps
    between tokens up to `horizon_s` (the run's drain limit); sessions' follow-up turns due at or
    after `arrivals_end_s` are not sent."""
    cfg_i = np.zeros(N_CFG_I, dtype=np.int64)
    cfg_i[C_MAX_SEQS] = engine.max_num_seqs
    cfg_i[C_MAX_TOKENS] = engine.max_num_batched_tokens
    cfg_i[C_CHUNKED] = engine.chunked_prefill
    cfg_i[C_BLOCK] = engine.block_size
    cfg_i[C_BLOCKS] = engine.kv_cache_blocks
    cfg_i[C_PREFIX] = engine.enable_prefix_caching
    cfg_i[C_MAX_LEN] = engine.max_model_len
    cfg_i[C_BALANCER] = balancer_code(load_balancer)
    cfg_i[C_LB_DRAWS] = BALANCERS[load_balancer].draws_per_pick if load_balancer in BALANCERS else 0
    cfg_i[C_KEY_W] = -(-engine.max_model_len // engine.block_size) + 1
    cfg_f = np.zeros(N_CFG_F)
    cfg_f[C_WARMUP_S] = warmup_s
    hist = itl_histogram()
    cfg_f[C_HIST_MIN] = hist.min_value
    cfg_f[C_HIST_LOG_GAMMA] = np.log(hist.gamma)
    cfg_f[C_ARRIVALS_END_S] = arrivals_end_s
    return allocate(cfg_i, cfg_f, np.asarray(step_params, dtype=float), np.asarray(ticks, dtype=float),
                    itl_buckets(horizon_s), slots, turns=None if turns is None else tuple(turns))  # fmt: skip


class LlmFleet:
    """Engine replicas in the compiled plane, advanced on demand by the control plane."""

    def __init__(
        self,
        plane: LlmPlane,
        arrivals: Iterator[ArrivalChunk],
        on_rows: Callable[[dict[str, np.ndarray]], None],
        balancer_rng: np.random.Generator | None,
    ) -> None:
        self.plane = plane
        self._arrivals = arrivals
        self._on_rows = on_rows
        self._lb_rng = balancer_rng
        self._chunk = ArrivalChunk(np.zeros(0), *(np.zeros(0, dtype=np.int64) for _ in range(4)))
        self.replicas = 0
        self._widen_for(plane.turn_prompt, plane.turn_output)  # sessions' follow-up turns
        if balancer_rng is not None:
            self._refill_draws()

    # -- replicas ------------------------------------------------------------------------------------

    def add_replica(self, now_s: float) -> int:
        """Put a new replica into service at `now_s` (its index is the next one); returns its slot."""
        self.advance_to(now_s)
        p = self.plane
        free = np.flatnonzero(p.slot_state == FREE)
        if free.size == 0:
            p = self.plane = with_more_slots(p)
            rebuild_table(p)
            free = np.flatnonzero(p.slot_state == FREE)
        slot = int(free[0])
        if slot >= MAX_SLOTS:
            raise RuntimeError(f"more than {MAX_SLOTS} replicas in one run")
        k.add_levels(p, now_s)
        init_slot_blocks(p, slot)
        p.slot_state[slot] = READY
        p.slot_replica[slot] = self.replicas
        p.ready[p.ints[I_N_READY]] = slot
        p.ints[I_N_READY] += 1
        p.ints[I_CAP_BLOCKS] += int(p.cfg_i[C_BLOCKS])
        self.replicas += 1
        return slot

    # -- running the kernel --------------------------------------------------------------------------

    def advance_to(self, stop_s: float) -> None:
        """Handle every data-plane event before `stop_s`."""
        while True:
            p = self.plane
            code = k.advance(p, *self._chunk, stop_s)
            if code == k.RAN_TO_STOP:
                return
            if code == NEED_ARRIVALS:
                self._next_chunk()
            elif code == NEED_FLUSH:
                self._on_rows(emptied_output(p))
            elif code == NEED_ROOM:
                if p.ints[I_FREE_ROW] < 0:
                    p = with_more_rows(p)
                if p.fu.ints[I_HEAP_N] + int(p.cfg_i[C_MAX_SEQS]) + 1 > p.fu.h_time.shape[0]:
                    p = with_more_follow_ups(p)
                self.plane = p
            elif code == NEED_DRAWS:
                self._refill_draws()
            else:  # pragma: no cover - a code added to the kernel but not here
                raise RuntimeError(f"unknown kernel return code {code}")

    def _next_chunk(self) -> None:
        p = self.plane
        chunk = next(self._arrivals, None)
        if chunk is None:
            p.ints[I_ARRIVALS_DONE] = 1
            self._chunk = ArrivalChunk(np.zeros(0), *(np.zeros(0, dtype=np.int64) for _ in range(4)))
        else:
            self._widen_for(chunk.prompt, chunk.output)
            self._chunk = chunk
        self.plane.ints[I_ARR_POS] = 0
        self.plane.ints[I_ARR_N] = self._chunk.arrival_s.size

    def _widen_for(self, prompt: np.ndarray, output: np.ndarray) -> None:
        """Block tables wide enough for these requests (those a replica can hold at all)."""
        p = self.plane
        block = int(p.cfg_i[C_BLOCK])
        widest = min(int(((prompt + output + block - 1) // block).max(initial=0)), int(p.cfg_i[C_BLOCKS]))
        if widest > p.rq_blocks.shape[1]:
            self.plane = with_wider_block_tables(p, widest)

    def _refill_draws(self) -> None:
        p = self.plane
        assert self._lb_rng is not None
        pos, end = int(p.ints[I_LB_POS]), int(p.ints[I_LB_END])
        left = end - pos
        p.lb_draws[:left] = p.lb_draws[pos:end]
        p.lb_draws[left : left + DRAW_CHUNK] = self._lb_rng.random(DRAW_CHUNK)
        p.ints[I_LB_POS] = 0
        p.ints[I_LB_END] = left + DRAW_CHUNK

    def integrate_levels_to(self, t_s: float) -> None:
        """Integrate the levels (running, waiting, KV blocks, busy replicas) up to `t_s`, past the last event."""
        k.add_levels(self.plane, t_s)

    def flush(self) -> None:
        """Hand the output log's rows to `on_rows` now."""
        self._on_rows(emptied_output(self.plane))

    # -- state for the control plane and the summary ---------------------------------------------------

    @property
    def now_s(self) -> float:
        """The time of the last data-plane event handled."""
        return float(self.plane.floats[F_CLOCK])

    @property
    def next_event_s(self) -> float:
        """When the next data-plane event is due (inf: none; valid after `advance_to`)."""
        return float(self.plane.floats[F_NEXT])

    def in_flight(self) -> int:
        """Requests waiting or running."""
        return int(self.plane.ints[I_RUNNING] + self.plane.ints[I_WAITING])

    def finished(self) -> bool:
        """Whether every arrival has been handled and nothing is left in flight (valid after `advance_to`)."""
        p = self.plane
        return bool(p.ints[I_ARRIVALS_DONE]) and self.in_flight() == 0

    def unfinished_rows(self) -> dict[str, np.ndarray]:
        """Arrival times of the requests still in flight (for the run's in-flight count)."""
        p = self.plane
        in_use = np.ones(p.rq_id.size, dtype=bool)
        row = int(p.ints[I_FREE_ROW])
        while row >= 0:
            in_use[row] = False
            row = int(p.rq_next[row])
        return {"arrival_s": p.rq_arrival_s[in_use].copy()}
