"""The reference LLM server's step scheduler: vLLM V1's `Scheduler.schedule()` rules, the same ones
the simulator's engine follows (capsim/serving/llm/kernel.py; docs/model.md "LLM serving"), here
in Python over real sequences. Pure Python (no torch): tests drive it with a virtual clock.

- `refusal` — which requests are refused before they queue (the simulator's `too_long`);
- `Scheduler.schedule` — one step: running sequences first, then waiting ones, under
  `max_num_seqs` and `max_num_batched_tokens`, chunked prefill on or off (the simulator's
  `schedule_step`);
- `Scheduler._preempt` — recompute preemption of the last running sequence (`preempt`);
- `Scheduler.finish_step` — the step's sampled tokens appended, stops, completions (`finish_step`).

A sequence's first token is sampled at the end of the step that processes its last prompt token;
each later step that includes it samples one more; it finishes at the end of the step whose token
meets a stop condition (max_tokens; EOS unless ignore_eos or before min_tokens; max_model_len).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from reference_server.llm.block_pool import BlockPool, SeqBlocks


@dataclass(frozen=True)
class SchedulerConfig:
    """The engine's scheduling settings (vLLM's names)."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    chunked_prefill: bool = True
    block_size: int = 16
    num_blocks: int = 4096
    prefix_caching: bool = True
    max_model_len: int = 2048


@dataclass(eq=False)
class Sequence:
    """One request inside the engine: its tokens, progress and stop conditions."""

    request_id: str
    prompt: list[int]
    max_tokens: int
    min_tokens: int = 0
    ignore_eos: bool = False
    eos_id: int = -1
    arrival_s: float = 0.0  # monotonic clock
    output: list[int] = field(default_factory=list)
    computed: int = 0  # tokens whose K and V are in the cache (or scheduled this step)
    scheduled: int = 0  # tokens scheduled in the current step
    blocks: SeqBlocks = field(default_factory=SeqBlocks)
    preemptions: int = 0
    first_scheduled_s: float | None = None
    finish_reason: str | None = None  # "length" or "stop" once finished
    all_tokens: list[int] = field(init=False)  # prompt + output, kept appended (no copy per step)

    def __post_init__(self) -> None:
        self.all_tokens = self.prompt + self.output

    @property
    def tokens(self) -> list[int]:
        """Prompt and output so far (what the cache must hold); the sequence's own list: do not modify."""
        return self.all_tokens

    def append(self, token: int) -> None:
        """Add a generated token."""
        self.output.append(token)
        self.all_tokens.append(token)

    @property
    def known(self) -> int:
        """Tokens known so far: prompt + generated."""
        return len(self.prompt) + len(self.output)


@dataclass
class StepPlan:
    """What one step computes: each scheduled sequence with its token count, in the order run."""

    seqs: list[Sequence] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # tokens scheduled for seqs[i]
    prefill_tokens: int = 0  # every scheduled token that is not a decode
    decode_seqs: int = 0  # sequences scheduled for exactly their next token after their first
    context_tokens: int = 0  # Σ (computed + scheduled) over scheduled sequences
    attention_pairs: float = 0.0  # Σ causal (query, key) pairs (capsim's attention_pairs_of)
    new_seqs: int = 0  # sequences scheduled for the first time
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to compute."""
        return not self.seqs

    def samples(self, seq: Sequence) -> bool:
        """Whether the sequence samples a token at this step's end (it catches up with its known tokens)."""
        return seq.computed == seq.known


def refusal(config: SchedulerConfig, prompt_tokens: int, max_tokens: int) -> str | None:
    """Why a request must be refused before it queues, or None (the simulator's `too_long`):
    prompt + max_tokens over max_model_len (vLLM's API server answers 400), more KV blocks than the
    engine has (it could never run), or, without chunked prefill, more tokens than one step's budget
    (such a prompt, or its recompute after a preemption, could never be scheduled)."""
    total = prompt_tokens + max_tokens
    if total > config.max_model_len:
        return (f"This model's maximum context length is {config.max_model_len} tokens. However, you requested "
                f"{total} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion)")  # fmt: skip
    blocks = -(-total // config.block_size)
    if blocks > config.num_blocks:
        return f"the request needs {blocks} KV blocks ({total} tokens) and the engine has {config.num_blocks}"
    if not config.chunked_prefill and total > config.max_num_batched_tokens:
        return (f"{total} tokens (prompt + max_tokens) exceed max_num_batched_tokens "
                f"{config.max_num_batched_tokens} and chunked prefill is off")  # fmt: skip
    return None


def attention_pairs_of(computed: int, new: int) -> float:
    """(query, key) pairs of causal attention for `new` tokens after `computed` cached ones
    (capsim/servicetime/llm_step.py's definition, logged so calibration fits the same regressor)."""
    return new * computed + new * (new + 1.0) * 0.5


class Scheduler:
    """Waiting and running sequences and the block pool of one engine."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.pool = BlockPool(config.num_blocks, config.block_size, config.prefix_caching)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions = 0
        self.prefix_queries = 0  # tokens looked up (vllm:prefix_cache_queries)
        self.prefix_hits = 0  # tokens found (vllm:prefix_cache_hits)

    def add(self, seq: Sequence) -> None:
        """A request joins the back of the waiting queue."""
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        """Whether any sequence waits or runs."""
        return bool(self.waiting or self.running)

    def abort(self, seq: Sequence) -> None:
        """Drop a sequence wherever it is (its client went away) and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.pool.free_seq(seq.blocks)

    def _preempt(self) -> Sequence:
        """Preempt the last running sequence by recompute (vLLM V1, FCFS: `self.running.pop()`): its
        blocks are freed, its computed tokens reset to 0, and it goes to the front of the waiting
        queue; it keeps its generated tokens, which it recomputes with its prompt."""
        victim = self.running.pop()
        self.pool.free_seq(victim.blocks)
        victim.computed = 0
        victim.scheduled = 0
        victim.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(victim)
        return victim

    def _take(self, plan: StepPlan, seq: Sequence, n: int, decode: bool) -> None:
        seq.scheduled = n
        plan.seqs.append(seq)
        plan.counts.append(n)
        plan.context_tokens += seq.computed + n
        plan.attention_pairs += attention_pairs_of(seq.computed, n)
        if decode:
            plan.decode_seqs += 1
        else:
            plan.prefill_tokens += n
        seq.computed += n  # advanced at schedule time, as vLLM does (`_update_after_schedule`)

    def schedule(self, now_s: float) -> StepPlan:
        """Choose the next step's tokens (vLLM V1 `Scheduler.schedule()`; the simulator's `schedule_step`).

        1. Running sequences, in admission order, each take min(known − computed, budget left)
           (1 for a decode; a chunk of a prompt) until the budget is spent. If their KV blocks
           cannot be had, the last running sequence is preempted (`_preempt`) and the allocation
           retried; when the sequence itself was the last, scheduling of running ones stops.
        2. Only if nothing was preempted: waiting sequences, from the front, while fewer than
           max_num_seqs run and budget is left: a sequence first takes its prefix-cache hit
           (`BlockPool.match_prefix`), then min(uncached tokens, budget) — without chunked prefill
           all of them or nothing, and a prompt that does not fit stops admission (vLLM v0.34
           `break`, FCFS). Admission also stops at the first sequence whose blocks cannot be had.
        A decode is a sequence that has produced a token and is scheduled for exactly its next one;
        every other scheduled token (a prompt, or prompt and output recomputed) is a prefill token.
        """
        cfg, pool = self.config, self.pool
        plan = StepPlan()
        budget = cfg.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.known - seq.computed, budget)
            if n <= 0:
                i += 1
                continue
            scheduled = True
            while not pool.allocate(seq.blocks, seq.tokens, seq.computed, n):
                victim = self._preempt()
                plan.preempted.append(victim)
                if victim is seq:
                    scheduled = False
                    break
            if not scheduled:
                break
            decode = bool(seq.output) and n == 1 and seq.computed + 1 == seq.known
            self._take(plan, seq, n, decode)
            budget -= n
            i += 1
        if plan.preempted:
            return plan
        while self.waiting and budget > 0 and len(self.running) < cfg.max_num_seqs:
            seq = self.waiting[0]
            tokens = seq.tokens
            hits = pool.match_prefix(seq.blocks, tokens)
            n = len(tokens) - len(hits) * cfg.block_size
            if not cfg.chunked_prefill and n > budget:
                break
            n = min(n, budget)
            if not pool.allocate(seq.blocks, tokens, len(hits) * cfg.block_size, n, hits):
                break
            self.waiting.popleft()
            self.running.append(seq)
            self.prefix_queries += len(tokens)
            self.prefix_hits += len(hits) * cfg.block_size
            seq.computed = len(hits) * cfg.block_size
            if seq.first_scheduled_s is None:
                seq.first_scheduled_s = now_s
                plan.new_seqs += 1
            self._take(plan, seq, n, decode=False)
            budget -= n
        return plan

    def finish_step(self, plan: StepPlan, sampled: dict[Sequence, int]) -> list[Sequence]:
        """The step's end: each sequence that caught up appends its sampled token; one that meets a
        stop condition finishes, frees its blocks and leaves. Returns the finished ones."""
        finished: list[Sequence] = []
        for seq in plan.seqs:
            seq.scheduled = 0
            if seq not in sampled:
                continue
            token = sampled[seq]
            seq.append(token)
            seq.finish_reason = stop_reason(seq, token, self.config.max_model_len)
            if seq.finish_reason is not None:
                finished.append(seq)
        for seq in finished:
            self.running.remove(seq)
            self.pool.free_seq(seq.blocks)
        return finished


def stop_reason(seq: Sequence, token: int, max_model_len: int) -> str | None:
    """Why the sequence stops after appending `token` (vLLM `check_stop`): "length" at max_tokens or
    max_model_len, "stop" at EOS (unless ignore_eos, and not before min_tokens); else None."""
    if len(seq.output) >= seq.max_tokens or seq.known >= max_model_len:
        return "length"
    if token == seq.eos_id and not seq.ignore_eos and len(seq.output) >= seq.min_tokens:
        return "stop"
    return None
