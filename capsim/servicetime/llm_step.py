"""How long one LLM engine step takes: the step-time rule, written once and compiled.

An engine step (one forward pass of a continuously batched engine, docs/model.md "LLM step time")
processes `prefill_tokens` prompt tokens and one token for each of `decode_seqs` decoding sequences.
`llm_step_time_s(params, ...)` returns its duration; the compiled LLM data plane calls it once per
step and Python callers (tests, validation, reports) call the same function. `params` is a float64
array that `step_params(service, model, hardware, tp)` builds from the scenario; its layout is
named by the `P_*` constants below.

Arguments, per step:
- `prefill_tokens` T: prompt tokens processed (a whole prompt, or a chunk of it);
- `decode_seqs` D: sequences producing one output token;
- `context_tokens` C: KV tokens the scheduled sequences attend, summed over sequences — each
  sequence's context length including this step's tokens (num_computed + num_new). A decode at
  context c contributes c; a prefill chunk of t tokens after s cached tokens contributes s + t;
- `new_requests` N: requests scheduled for the first time (per-request overhead; the number of
  prompts a prefill is split between);
- `attention_pairs` (optional) A: (query, key) pairs the step's causal attention computes, summed
  over sequences with `attention_pairs_of(computed, new)` = new × computed + new × (new + 1) / 2.
  A decode contributes its context length c; a prefill of t tokens from scratch t(t + 1)/2. When
  the caller omits it (−1), A is taken as C − T + T(T/n + 1)/2 with n = max(N, 1): exact for
  decode-only steps and for a step whose prefill is n whole prompts of equal length, short by the
  chunk × cached-prefix term t·s for chunks after the first.

Kinds (`service.kind`):
- `llm_linear` (issue 15's rule): base + per_prefill_token × T + per_decode_seq × D, plus the
  optional per_context_token × C and per_request × N (all default 0). `llm_fitted` evaluates the
  same form with coefficients calibration fitted, and carries where they came from.
- `llm_roofline`: the FLOPs and bytes of the step from the model's shape against the GPU's peak
  dense BF16/FP16 throughput and memory bandwidth, following BLIS's `sim/latency/roofline.go`
  (inference-sim/inference-sim @f90a1e3): weights read once per step, KV read and written per
  context token, 2 × parameters FLOPs per token plus attention, compute at a phase-specific model
  FLOPs utilization (MFU), time = max(compute, memory) (or their sum), plus tensor-parallel
  all-reduces and fixed overheads. Formulas in `_roofline_s` and docs/model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numba import njit

from capsim.errors import CapsimInputError
from capsim.servicetime.llm_service import (
    ACTIVATION_DTYPE,
    LlmFittedService,
    LlmLinearService,
    LlmRooflineService,
    default_mfu,
)

if TYPE_CHECKING:
    from capsim.hardware.model_catalogue import ModelShape
    from capsim.hardware.spec import HardwareSpec

__all__ = [
    "KIND_LINEAR",
    "KIND_ROOFLINE",
    "N_PARAMS",
    "LlmFittedService",
    "LlmLinearService",
    "LlmRooflineService",
    "attention_pairs_of",
    "llm_step_time_s",
    "step_params",
]

# --- params layout -------------------------------------------------------------------------------
KIND_LINEAR = 0.0  # llm_linear and llm_fitted
KIND_ROOFLINE = 1.0

P_KIND = 0
P_BASE_S = 1  # fixed time per step
P_PER_PREFILL_TOKEN_S = 2  # linear: per prompt token processed
P_PER_DECODE_SEQ_S = 3  # linear: per decoding sequence
P_PER_CONTEXT_TOKEN_S = 4  # linear: per context token attended
P_PER_REQUEST_S = 5  # both kinds: per request scheduled for the first time
# llm_roofline only (per GPU: work is divided by the tensor-parallel degree)
P_FLOPS_PER_TOKEN = 6  # 2 × non-embedding parameters active per token
P_ATTN_FLOPS_PER_PAIR = 7  # 4 × layers × q heads × head dim (QK^T and AV)
P_LM_HEAD_FLOPS = 8  # 2 × hidden × vocab, per sampled position
P_DENSE_WEIGHT_BYTES = 9  # weights read once per step (all of them for a dense model)
P_EXPERT_BYTES = 10  # bytes of one expert in every layer (MoE), else 0
P_EXPERTS = 11  # routed experts per layer (MoE), else 0
P_EXPERTS_PER_TOKEN = 12
P_KV_BYTES_PER_TOKEN = 13
P_ACTIVATION_BYTES_PER_TOKEN = 14  # layers × hidden × bytes (BLIS: activations_tokens)
P_PREFILL_FLOPS_PER_S = 15  # peak × mfu_prefill
P_DECODE_FLOPS_PER_S = 16  # peak × mfu_decode
P_BYTES_PER_S = 17  # bandwidth × bandwidth_efficiency
P_ALLREDUCE_S_PER_STEP = 18  # 2 × layers × latency per all-reduce (tp > 1)
P_ALLREDUCE_S_PER_TOKEN = 19  # 2 × layers × ring all-reduce bytes per token / link bandwidth
P_OVERLAP = 20  # 1: max(compute, memory); 0: compute + memory
N_PARAMS = 21


@njit(cache=True, inline="always", error_model="numpy")
def attention_pairs_of(computed: float, new: float) -> float:
    """(query, key) pairs of causal attention for `new` tokens after `computed` cached ones: each new
    token attends every cached token and the new ones up to itself."""
    return new * computed + new * (new + 1.0) * 0.5


@njit(cache=True, inline="always", error_model="numpy")
def _roofline_s(params: np.ndarray, prefill_tokens: float, decode_seqs: float, context_tokens: float,
                new_requests: float, attention_pairs: float) -> float:  # fmt: skip
    """Roofline time of one step on one GPU (module docstring; docs/model.md "LLM step time").

    compute = [2P·T + LM(N) + att·max(A − C, 0)]/(peak·mfu_prefill) + [2P·D + LM(D) + att·C]
              /(peak·mfu_decode), where att = 4·layers·q heads·head dim per (query, key) pair and
              LM(x) = 2·hidden·vocab·x (the LM head runs on sampled positions: one per decode, one per
              prompt a step completes — taken as the new requests). C pairs are one per context token
              (all of a decode's attention); A − C are the prompt chunks' own (chunk × cached prefix
              and the causal square);
    memory  = weights + C × KV bytes + (T + D) × activation bytes, over bandwidth × efficiency, where
              a MoE reads its dense weights plus E·(1 − (1 − k/E)^(T+D)) experts per layer — the
              expected number of distinct experts T + D tokens route to under uniform routing;
    step    = max(compute, memory) (or their sum) + all-reduce time."""
    tokens = prefill_tokens + decode_seqs
    if attention_pairs < 0.0:
        shares = max(new_requests, 1.0)
        attention_pairs = context_tokens - prefill_tokens + prefill_tokens * (prefill_tokens / shares + 1.0) * 0.5
    # C of the pairs are one per context token (a decode's whole attention); the rest, A − C, are the
    # prompt chunks' own: the chunk × its cached prefix and its causal square. Each side at its own MFU,
    # so that more work of either kind never shortens a step.
    prompt_pairs = max(attention_pairs - context_tokens, 0.0)
    prefill_flops = (params[P_FLOPS_PER_TOKEN] * prefill_tokens + params[P_LM_HEAD_FLOPS] * new_requests
                     + params[P_ATTN_FLOPS_PER_PAIR] * prompt_pairs)  # fmt: skip
    decode_flops = ((params[P_FLOPS_PER_TOKEN] + params[P_LM_HEAD_FLOPS]) * decode_seqs
                    + params[P_ATTN_FLOPS_PER_PAIR] * context_tokens)  # fmt: skip
    compute_s = prefill_flops / params[P_PREFILL_FLOPS_PER_S] + decode_flops / params[P_DECODE_FLOPS_PER_S]
    weights = params[P_DENSE_WEIGHT_BYTES]
    experts = params[P_EXPERTS]
    if experts > 0.0:
        touched = experts * (1.0 - (1.0 - params[P_EXPERTS_PER_TOKEN] / experts) ** tokens)
        weights += params[P_EXPERT_BYTES] * touched
    moved = weights + params[P_KV_BYTES_PER_TOKEN] * context_tokens + params[P_ACTIVATION_BYTES_PER_TOKEN] * tokens
    memory_s = moved / params[P_BYTES_PER_S]
    busy_s = max(compute_s, memory_s) if params[P_OVERLAP] > 0.0 else compute_s + memory_s
    return busy_s + params[P_ALLREDUCE_S_PER_STEP] + params[P_ALLREDUCE_S_PER_TOKEN] * tokens


@njit(cache=True, inline="always", error_model="numpy")
def llm_step_time_s(params: np.ndarray, prefill_tokens: float, decode_seqs: float, context_tokens: float,
                    new_requests: float, attention_pairs: float = -1.0) -> float:  # fmt: skip
    """Seconds one engine step takes (module docstring: the arguments and the kinds).

    Every kind adds base (per step) and per_request × new_requests; `llm_linear` / `llm_fitted` add
    per_prefill_token × T + per_decode_seq × D + per_context_token × C, `llm_roofline` its roofline
    time. A step with nothing to do takes 0."""
    if prefill_tokens <= 0.0 and decode_seqs <= 0.0:
        return 0.0
    fixed_s = params[P_BASE_S] + params[P_PER_REQUEST_S] * new_requests
    if params[P_KIND] == KIND_ROOFLINE:
        return fixed_s + _roofline_s(params, prefill_tokens, decode_seqs, context_tokens, new_requests,
                                     attention_pairs)  # fmt: skip
    return (fixed_s + params[P_PER_PREFILL_TOKEN_S] * prefill_tokens + params[P_PER_DECODE_SEQ_S] * decode_seqs
            + params[P_PER_CONTEXT_TOKEN_S] * context_tokens)  # fmt: skip


def _linear_params(service: LlmLinearService | LlmFittedService) -> np.ndarray:
    params = np.zeros(N_PARAMS)
    params[P_KIND] = KIND_LINEAR
    params[P_BASE_S] = service.base_ms / 1e3
    params[P_PER_PREFILL_TOKEN_S] = service.per_prefill_token_ms / 1e3
    params[P_PER_DECODE_SEQ_S] = service.per_decode_seq_ms / 1e3
    params[P_PER_CONTEXT_TOKEN_S] = service.per_context_token_ms / 1e3
    params[P_PER_REQUEST_S] = service.per_request_ms / 1e3
    return params


def _roofline_params(service: LlmRooflineService, model: ModelShape, hardware: HardwareSpec, tp: int) -> np.ndarray:
    from capsim.hardware.model_catalogue import embedding_params, kv_bytes_per_token, shape_params
    from capsim.hardware.roofline import bandwidth_bytes_per_s, peak_ops_per_s
    from capsim.hardware.spec import BYTES_PER_ELEMENT

    weight_b = float(BYTES_PER_ELEMENT[service.precision])
    kv_b = float(BYTES_PER_ELEMENT[service.kv_cache_dtype_resolved()])
    act_b = float(BYTES_PER_ELEMENT[ACTIVATION_DTYPE])  # FP8 weights still compute in 16-bit activations
    mfu_prefill, mfu_decode = default_mfu(service, hardware)
    total, active = shape_params(model)
    outside = embedding_params(model)
    h, layers = float(model.hidden_size), float(model.layers)
    params = np.zeros(N_PARAMS)
    params[P_KIND] = KIND_ROOFLINE
    params[P_BASE_S] = service.base_ms / 1e3 + service.per_layer_us * model.layers / 1e6
    params[P_PER_REQUEST_S] = service.per_request_ms / 1e3
    params[P_FLOPS_PER_TOKEN] = 2.0 * (active - outside) / tp
    params[P_ATTN_FLOPS_PER_PAIR] = 4.0 * layers * model.attention_heads * model.head_size / tp
    params[P_LM_HEAD_FLOPS] = 2.0 * h * model.vocab_size / tp
    if model.is_moe:
        expert_all_layers = 3.0 * h * model.expert_intermediate_size * layers
        params[P_EXPERT_BYTES] = expert_all_layers * weight_b / tp
        params[P_EXPERTS] = model.experts
        params[P_EXPERTS_PER_TOKEN] = model.experts_per_token
        dense = total - expert_all_layers * model.experts
    else:
        dense = total
    # The token embedding is a gather of T + D rows, not a read of the table: only the LM head (the
    # same matrix when tied) is read whole.
    params[P_DENSE_WEIGHT_BYTES] = (dense - model.vocab_size * h * (0 if model.tied_embeddings else 1)) * weight_b / tp
    params[P_KV_BYTES_PER_TOKEN] = kv_bytes_per_token(model, kv_b, tp)
    params[P_ACTIVATION_BYTES_PER_TOKEN] = layers * h * act_b / tp
    peak = peak_ops_per_s(hardware, "fp8" if service.precision == "fp8" else "bf16")
    params[P_PREFILL_FLOPS_PER_S] = peak * mfu_prefill
    params[P_DECODE_FLOPS_PER_S] = peak * mfu_decode
    params[P_BYTES_PER_S] = bandwidth_bytes_per_s(hardware) * service.bandwidth_efficiency
    if tp > 1:
        # Two all-reduces per layer (after attention and after the MLP), each a ring all-reduce of the
        # tokens' hidden states: 2(tp − 1)/tp × bytes per GPU over the GPU-to-GPU link.
        params[P_ALLREDUCE_S_PER_STEP] = 2.0 * layers * service.allreduce_latency_us / 1e6
        ring_bytes = 2.0 * (tp - 1) / tp * h * act_b
        params[P_ALLREDUCE_S_PER_TOKEN] = 2.0 * layers * ring_bytes / (service.interconnect_gbps * 1e9)
    params[P_OVERLAP] = 1.0 if service.overlap == "max" else 0.0
    return params


def step_params(service: object, model: ModelShape | None, hardware: HardwareSpec | None, tp: int = 1) -> np.ndarray:
    """The `params` array of `llm_step_time_s` for a scenario's LLM service on `model` and one replica
    of `tp` GPUs of `hardware` (tensor parallel degree = GPUs per replica).

    `llm_roofline` needs the model and the hardware entry (its memory bandwidth and BF16/FP16 peak:
    a null figure is an error naming it); `llm_fitted` refuses a model or hardware other than the
    one it was fitted on (fitted coefficients do not transfer). Errors are one line naming the field."""
    if tp < 1:
        raise CapsimInputError(f"expected an integer >= 1, got {tp}", field="hardware.gpus_per_replica")
    if isinstance(service, LlmFittedService):
        service.check_applies(model, hardware, tp)
        return _linear_params(service)
    if isinstance(service, LlmLinearService):
        return _linear_params(service)
    if isinstance(service, LlmRooflineService):
        if model is None:
            raise CapsimInputError("llm_roofline computes the step from the model's shape: add model: {name: ...}",
                                   field="model")  # fmt: skip
        if hardware is None:
            raise CapsimInputError("llm_roofline needs a hardware catalogue entry", field="hardware.name")
        return _roofline_params(service, model, hardware, tp)
    kind = getattr(service, "kind", type(service).__name__)
    raise CapsimInputError(f"service.kind {kind} is not an LLM step-time model (expected llm_linear, "
                           "llm_roofline or llm_fitted)", field="service.kind")  # fmt: skip


@dataclass(frozen=True)
class StepBreakdown:
    """One step's time as `step_time_breakdown` reports it, in milliseconds (validation tables)."""

    step_ms: float
    bound: Literal["compute", "memory", "linear"]
    compute_ms: float = 0.0
    memory_ms: float = 0.0


def step_time_breakdown(params: np.ndarray, prefill_tokens: int, decode_seqs: int, context_tokens: int,
                        new_requests: int, attention_pairs: float = -1.0) -> StepBreakdown:  # fmt: skip
    """`llm_step_time_s` with, for a roofline, its compute and memory sides (for docs and reports)."""
    step_s = llm_step_time_s(params, prefill_tokens, decode_seqs, context_tokens, new_requests, attention_pairs)
    if params[P_KIND] != KIND_ROOFLINE:
        return StepBreakdown(step_ms=step_s * 1e3, bound="linear")
    compute_only = params.copy()
    compute_only[P_BYTES_PER_S] = np.inf
    compute_only[P_OVERLAP] = 0.0
    memory_only = params.copy()
    memory_only[P_PREFILL_FLOPS_PER_S] = memory_only[P_DECODE_FLOPS_PER_S] = np.inf
    memory_only[P_OVERLAP] = 0.0
    args = (prefill_tokens, decode_seqs, context_tokens, new_requests, attention_pairs)
    fixed_s = llm_step_time_s(_fixed_only(params), *args)
    compute_s = llm_step_time_s(compute_only, *args) - fixed_s
    memory_s = llm_step_time_s(memory_only, *args) - fixed_s
    return StepBreakdown(step_ms=step_s * 1e3, bound="compute" if compute_s >= memory_s else "memory",
                         compute_ms=compute_s * 1e3, memory_ms=memory_s * 1e3)  # fmt: skip


def _fixed_only(params: np.ndarray) -> np.ndarray:
    """`params` with the compute and memory sides made free: what is left is fixed and all-reduce time."""
    fixed = params.copy()
    fixed[P_BYTES_PER_S] = fixed[P_PREFILL_FLOPS_PER_S] = fixed[P_DECODE_FLOPS_PER_S] = np.inf
    fixed[P_OVERLAP] = 0.0
    return fixed
