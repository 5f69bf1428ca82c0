"""The reference LLM server's per-step log: one JSON record per engine step, what white-box
calibration fits the step time on (prefill tokens, decoding sequences, context tokens, …).

    {"step": 17, "start_s": 1765152000.123456, "end_s": 1765152000.131002, "duration_ms": 7.546,
     "prefill_tokens": 512, "decode_seqs": 3, "context_tokens": 1830, "attention_pairs": 131712.0,
     "new_seqs": 1, "scheduled_seqs": 4, "finished": 1, "preempted": 0, "running": 3, "waiting": 0,
     "kv_blocks_used": 120, "kv_blocks_total": 4096, "request_ids": ["a", "b", "c", "d"],
     "scheduled_tokens": [1, 1, 1, 512]}

- `start_s` is taken before scheduling, `end_s` after the step's tokens were sampled and handed to
  their requests (epoch seconds, `time.time()`, the clock of a load generator on the same machine);
  `duration_ms` is `end_s − start_s` from a monotonic clock.
- `prefill_tokens`, `decode_seqs`, `context_tokens` (Σ computed + scheduled), `attention_pairs` and
  `new_seqs` are the quantities of capsim's step-time models (docs/model.md "LLM step time").
- `preempted` counts the sequences preempted while scheduling this step; `running` and `waiting` are
  the queues after the step; `kv_blocks_used` is held blocks after the step.
- `request_ids[i]` was scheduled for `scheduled_tokens[i]` tokens (the client's `X-Request-Id` when
  it sent one).

Records go to a JSON-lines file (`--step-log`, flushed per record, so a crash loses nothing already
served) and to a bounded ring served by `GET /debug/steps?since=ID` — the per-batch log's store
(`reference_server/batchlog.py`), records in step order.
"""

from __future__ import annotations

import orjson

from reference_server.batchlog import BatchLog
from reference_server.llm.scheduler import Scheduler, StepPlan

StepLog = BatchLog


def step_record(step: int, start_s: float, end_s: float, plan: StepPlan, scheduler: Scheduler, finished: int) -> bytes:
    """The JSON record of one finished step."""
    return orjson.dumps(
        {
            "step": step,
            "start_s": round(start_s, 6),
            "end_s": round(end_s, 6),
            "duration_ms": round((end_s - start_s) * 1e3, 4),
            "prefill_tokens": plan.prefill_tokens,
            "decode_seqs": plan.decode_seqs,
            "context_tokens": plan.context_tokens,
            "attention_pairs": plan.attention_pairs,
            "new_seqs": plan.new_seqs,
            "scheduled_seqs": len(plan.seqs),
            "finished": finished,
            "preempted": len(plan.preempted),
            "running": len(scheduler.running),
            "waiting": len(scheduler.waiting),
            "kv_blocks_used": scheduler.pool.used,
            "kv_blocks_total": scheduler.pool.num_blocks,
            "request_ids": [s.request_id for s in plan.seqs],
            "scheduled_tokens": plan.counts,
        }
    )
