"""The reference LLM server's engine loop: continuous batching over the real model on one thread.

Each step (one iteration of `LlmEngine._loop`):
1. take the requests that arrived (and the aborts) since the last step — an idle engine blocks
   until one arrives, then takes every request already there (docs/model.md "LLM serving": an idle
   engine starts a step when work arrives, a busy one admits new requests at its next step boundary);
2. `Scheduler.schedule` chooses the step's tokens (vLLM V1's rules, `scheduler.py`);
3. the model runs once over the step's flattened tokens, writing K and V to their blocks and
   attending over the pages (`model.forward_step`); the LM head runs only on the rows that sample;
4. tokens are sampled (`sampling.py`) and `Scheduler.finish_step` appends them and finishes
   sequences; each request's new token goes to its HTTP handler through the event loop;
5. metrics (`metrics.py`) and one record of the per-step log (`steplog.py`).

The HTTP side only parses, submits and streams; a slow step never blocks a health check.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from reference_server.llm.metrics import LlmMetrics
from reference_server.llm.model import LlamaModel
from reference_server.llm.paged_attention import AttentionBatch, PagedKVCache, PrefillChunk, context_slots, slots_of
from reference_server.llm.sampling import SamplingParams, sample
from reference_server.llm.scheduler import Scheduler, Sequence, StepPlan
from reference_server.llm.steplog import StepLog, step_record

log = logging.getLogger("reference_server.llm")

# What a request's handler receives after each step that produced tokens for it:
# (new token ids, finish reason or None, monotonic time the step ended).
TokenSink = Callable[[list[int], str | None, float], None]


@dataclass(eq=False)
class EngineRequest:
    """A request inside the engine: its sequence, sampling settings, where its tokens go, its times."""

    seq: Sequence
    params: SamplingParams
    sink: TokenSink
    arrival_mono: float
    first_token_mono: float | None = None
    last_token_mono: float | None = None
    done: bool = False


class LlmEngine:
    """The model, its paged cache and the scheduler, stepped on a thread of their own."""

    def __init__(self, model: LlamaModel, cache: PagedKVCache, scheduler: Scheduler, metrics: LlmMetrics,
                 step_log: StepLog, device: torch.device, seed: int) -> None:  # fmt: skip
        self.model = model
        self.cache = cache
        self.scheduler = scheduler
        self.metrics = metrics
        self.step_log = step_log
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)  # unseeded requests' draws
        self.inbox: queue.SimpleQueue[tuple[str, EngineRequest]] = queue.SimpleQueue()
        self.requests: dict[Sequence, EngineRequest] = {}
        self.steps = 0
        self.failed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llm-engine", daemon=True)
        metrics.bind(lambda: len(scheduler.running), lambda: len(scheduler.waiting), lambda: scheduler.pool.usage)

    def start(self) -> None:
        """Start stepping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current step."""
        self._stop.set()
        self._thread.join(timeout=30)

    def submit(self, request: EngineRequest) -> None:
        """Queue a request for the next step (any thread)."""
        self.inbox.put(("add", request))

    def abort(self, request: EngineRequest) -> None:
        """Drop a request whose client went away (any thread); its blocks are freed at the next step."""
        self.inbox.put(("abort", request))

    # -- the loop -------------------------------------------------------------------------------
    def _take_inbox(self) -> None:
        block = not self.scheduler.has_work
        while True:
            try:
                kind, req = self.inbox.get(block=block, timeout=0.05) if block else self.inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "add":
                self.requests[req.seq] = req
                self.scheduler.add(req.seq)
            elif not req.done:
                req.done = True
                self.requests.pop(req.seq, None)
                self.scheduler.abort(req.seq)
                self.metrics.finished("abort")

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._take_inbox()
                if self.scheduler.has_work:
                    self.step()
        except Exception as exc:  # the engine is dead: say so on every open request and /health
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("engine step failed")
            for req in self.requests.values():
                req.sink([], "error", time.monotonic())

    @torch.inference_mode()
    def step(self) -> StepPlan:
        """Run one engine step (see the module docstring) and return its plan."""
        start_epoch, start = time.time(), time.perf_counter()
        sched = self.scheduler
        plan = sched.schedule(time.monotonic())
        if plan.preempted:
            self.metrics.preemptions.inc(len(plan.preempted))
        if plan.empty:
            return plan
        tokens, positions, batch, sample_rows, sample_seqs = self.step_inputs(plan)
        logits = self.model.forward_step(tokens, positions, self.cache, batch, sample_rows)
        reqs = [self.requests[s] for s in sample_seqs]
        sampled = sample(logits, [r.params for r in reqs], [len(s.output) for s in sample_seqs], self.generator)
        now = time.monotonic()
        by_seq = dict(zip(sample_seqs, sampled, strict=True))
        finished = set(sched.finish_step(plan, by_seq))
        for req, token in zip(reqs, sampled, strict=True):
            self._emit(req, token, now, req.seq in finished)
        self.steps += 1
        end_epoch = start_epoch + (time.perf_counter() - start)
        self.metrics.iteration_tokens.observe(plan.prefill_tokens + plan.decode_seqs)
        self.step_log.append(self.steps, step_record(self.steps, start_epoch, end_epoch, plan, sched, len(finished)))
        return plan

    def _emit(self, req: EngineRequest, token: int, now: float, finished: bool) -> None:
        m = self.metrics
        m.generation_tokens.inc()
        if req.first_token_mono is None:
            req.first_token_mono = now
            m.prompt_tokens.inc(len(req.seq.prompt))
            m.ttft.observe(now - req.arrival_mono)
            first_sched = req.seq.first_scheduled_s if req.seq.first_scheduled_s is not None else now
            m.queue_time.observe(first_sched - req.arrival_mono)
            m.prefill_time.observe(now - first_sched)
        else:
            assert req.last_token_mono is not None
            m.itl.observe(now - req.last_token_mono)
        req.last_token_mono = now
        reason = req.seq.finish_reason if finished else None
        if finished:
            req.done = True
            del self.requests[req.seq]
            n = len(req.seq.output)
            m.e2e.observe(now - req.arrival_mono)
            if n > 1:
                m.tpot.observe((now - req.first_token_mono) / (n - 1))
            m.finished(reason or "length")
        req.sink([token], reason, now)

    def step_inputs(self, plan: StepPlan) -> tuple[torch.Tensor, torch.Tensor, AttentionBatch, torch.Tensor,
                                                   list[Sequence]]:  # fmt: skip
        """The step's flattened tokens and positions, where their K and V go, what each attends,
        and which rows sample (with their sequences)."""
        bs, dev = self.cache.block_size, self.device
        tokens: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        dec_rows: list[int] = []
        dec_tables: list[list[int]] = []
        dec_lengths: list[int] = []
        prefills: list[PrefillChunk] = []
        for seq in plan.seqs:
            n = seq.scheduled
            start = seq.computed - n  # computed advanced at schedule time
            row = len(tokens)
            tokens += seq.tokens[start : start + n]
            positions += range(start, start + n)
            table = seq.blocks.table
            slots += slots_of(table, start, start + n, bs)
            if n == 1:
                dec_rows.append(row)
                dec_tables.append(table)
                dec_lengths.append(start + 1)
            else:
                keys, _ = context_slots([table], [start + n], bs, dev)
                prefills.append(PrefillChunk(row, n, start, keys[0]))
            if plan.samples(seq):
                sample_rows.append(row + n - 1)
                sample_seqs.append(seq)
        batch = AttentionBatch(torch.tensor(slots, dtype=torch.long, device=dev), prefills=prefills)
        if dec_rows:
            batch.decode_q = torch.tensor(dec_rows, dtype=torch.long, device=dev)
            batch.decode_slots, batch.decode_valid = context_slots(dec_tables, dec_lengths, bs, dev)
        as_long = dict(dtype=torch.long, device=dev)
        return (torch.tensor(tokens, **as_long), torch.tensor(positions, **as_long), batch,  # type: ignore[arg-type]
                torch.tensor(sample_rows, **as_long), sample_seqs)  # type: ignore[arg-type]  # fmt: skip
