"""Drive the compiled LLM engine directly (no scenario file): explicit scheduler settings, the
issue's llm_linear step time, and arrivals given as lists, for trace and closed-form tests."""

from __future__ import annotations

import numpy as np

from capsim.servicetime.llm_step import N_PARAMS, P_BASE_S, P_PER_DECODE_SEQ_S, P_PER_PREFILL_TOKEN_S
from capsim.serving.llm.fleet import ArrivalChunk, EngineSettings, LlmFleet, Sessions, new_plane

MS = 1e-3


def linear_params(base_ms: float = 5.0, per_prefill_token_ms: float = 0.1,
                  per_decode_seq_ms: float = 0.1) -> np.ndarray:  # fmt: skip
    """`llm_linear`'s step-time parameters: base + per prefill token x T + per decoding sequence x D."""
    params = np.zeros(N_PARAMS)
    params[P_BASE_S] = base_ms * MS
    params[P_PER_PREFILL_TOKEN_S] = per_prefill_token_ms * MS
    params[P_PER_DECODE_SEQ_S] = per_decode_seq_ms * MS
    return params


def engine(
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    chunked_prefill: bool = True,
    block_size: int = 16,
    kv_cache_blocks: int = 4096,
    enable_prefix_caching: bool = False,
    max_model_len: int = 131072,
) -> EngineSettings:
    return EngineSettings(max_num_seqs, max_num_batched_tokens, chunked_prefill, block_size, kv_cache_blocks,
                          enable_prefix_caching, max_model_len)  # fmt: skip


def chunks(arrival_s: list[float] | np.ndarray, prompt: list[int] | np.ndarray, output: list[int] | np.ndarray,
           key: list[int] | np.ndarray | None = None, size: int = 1 << 30) -> list[ArrivalChunk]:  # fmt: skip
    """Arrival chunks of at most `size` requests; each request its own prefix key unless given."""
    t = np.asarray(arrival_s, dtype=float)
    n = t.size
    ids = np.arange(n, dtype=np.int64)
    p = np.broadcast_to(np.asarray(prompt, dtype=np.int64), (n,)).copy()
    o = np.broadcast_to(np.asarray(output, dtype=np.int64), (n,)).copy()
    keys = 2 * ids if key is None else np.asarray(key, dtype=np.int64)
    return [ArrivalChunk(t[i : i + size], p[i : i + size], o[i : i + size], keys[i : i + size], ids[i : i + size])
            for i in range(0, n, size)]  # fmt: skip


class Run:
    """One engine run: its output rows (sorted by request id) and the fleet (the plane's state)."""

    def __init__(self, fleet: LlmFleet, rows: dict[str, np.ndarray]) -> None:
        self.fleet = fleet
        order = np.argsort(rows["id"], kind="stable")
        self.rows = {name: col[order] for name, col in rows.items()}

    @property
    def ttft_ms(self) -> np.ndarray:
        return (self.rows["first_token_s"] - self.rows["arrival_s"]) / MS

    @property
    def e2e_ms(self) -> np.ndarray:
        return (self.rows["end_s"] - self.rows["arrival_s"]) / MS

    @property
    def queue_wait_ms(self) -> np.ndarray:
        return (self.rows["first_sched_s"] - self.rows["arrival_s"]) / MS


def run_engine(
    settings: EngineSettings,
    arrivals: list[ArrivalChunk],
    *,
    params: np.ndarray | None = None,
    replicas: int = 1,
    load_balancer: str = "round_robin",
    until_s: float = 1e6,
    warmup_s: float = 0.0,
    step_s: float | None = None,
    on_step: object = None,
    seed: int = 0,
    sessions: Sessions | None = None,
    arrivals_end_s: float = np.inf,
) -> Run:
    """Run the engine over `arrivals` until `until_s` (advancing `step_s` at a time and calling
    `on_step(fleet)` between, when given, until every request has finished)."""
    plane = new_plane(settings, linear_params() if params is None else params, load_balancer=load_balancer,
                      slots=replicas, ticks=np.array([until_s]), warmup_s=warmup_s, horizon_s=until_s,
                      arrivals_end_s=arrivals_end_s, turns=sessions)  # fmt: skip
    blocks: list[dict[str, np.ndarray]] = []
    rng = np.random.default_rng(seed) if load_balancer in ("random", "power_of_two", "weighted_random") else None
    fleet = LlmFleet(plane, iter(arrivals), blocks.append, rng)
    for _ in range(replicas):
        fleet.add_replica(0.0)
    if step_s is None:
        fleet.advance_to(until_s)
    else:
        t = 0.0
        while t < until_s and not fleet.finished():
            t = min(t + step_s, until_s)
            fleet.advance_to(t)
            on_step(fleet)  # type: ignore[operator]
    fleet.flush()
    rows = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    return Run(fleet, rows)
