"""The scenario specs of the LLM step-time models (`service.kind: llm_linear | llm_roofline |
llm_fitted`). Their evaluation — one compiled function — is in `capsim.servicetime.llm_step`.

An LLM service describes one engine *step*, not one batch of requests: it needs `serving.mode: llm`,
and the batch-oriented calls of the other service kinds (`mean_s`, `sampler`) refuse with a line
that says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import ConfigDict, Field

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel
from capsim.servicetime.base import BatchSampler, ServiceTimeModel

if TYPE_CHECKING:
    from capsim.hardware.model_catalogue import ModelShape
    from capsim.hardware.spec import HardwareSpec

# BLIS's roofline MFU per GPU (inference-sim/inference-sim @f90a1e3 `hardware_config.json`,
# "calibrated per Discussion #589"; H200 from PR #1710): (prefill, decode). The A100 row is BLIS's
# A100-SXM (80 GB); MFU is a compute-side factor, so the 40 GB and PCIe parts take it too.
BLIS_MFU: dict[str, tuple[float, float]] = {
    "h100sxm": (0.45, 0.30),
    "h200": (0.45, 0.30),
    "a10080gb": (0.38, 0.18),
    "a10040gb": (0.38, 0.18),
    "a10080gbpcie": (0.38, 0.18),
    "l40s": (0.32, 0.08),
}
AICONFIGURATOR_BANDWIDTH_EFFICIENCY = 0.8
"""Share of datasheet HBM bandwidth a decode step achieves: AIConfigurator's empirical memory
scaling factor (ai-dynamo/aiconfigurator `aic-core/.../systems/h100_sxm.yaml`, @095f58a)."""
AICONFIGURATOR_NVLINK_GBPS = 450.0
"""GPU-to-GPU bandwidth for tensor-parallel all-reduces: NVLink 450 GB/s per direction on H100 SXM
(AIConfigurator `systems/h100_sxm.yaml`); set `interconnect_gbps` for other GPUs (A100 SXM: 300)."""
BLIS_STEP_OVERHEAD_US = 126.0
"""BLIS trained-physics β7, fixed time per step (inference-sim `defaults.yaml`, fitted on 15 H100 vLLM runs)."""
BLIS_LAYER_OVERHEAD_US = 32.1
"""BLIS trained-physics β5, fixed time per layer per step (same fit)."""
BLIS_INGRESS_MS = 15.563
"""BLIS trained-physics α0, time per request outside the engine: HTTP, validation, queueing at the API
server (same fit). Part of a client-measured TTFT; capsim's engine step has no such term."""
VIDUR_ALLREDUCE_LAUNCH_US = 20.0
ACTIVATION_DTYPE = "bf16"
"""Activations (and the KV cache by default) stay 16-bit when the weights are FP8."""
"""Fixed cost of one all-reduce: Vidur's NCCL CPU launch overhead, 0.02 ms (microsoft/vidur
`vidur/config/config.py`)."""


class _LlmService(ServiceTimeModel):
    """What every LLM step-time spec shares: it times steps, so the batch calls refuse."""

    def _not_batches(self) -> CapsimInputError:
        return CapsimInputError(f"service.kind {getattr(self, 'kind', '')} times LLM engine steps and needs "
                                "serving.mode: llm", field="service.kind")  # fmt: skip

    def mean_s(self, batch_size: int, items: float | None = None) -> float:
        raise self._not_batches()

    def sampler(self, rng: np.random.Generator) -> BatchSampler:
        raise self._not_batches()

    def describe(self) -> dict[str, object]:
        return self.model_dump(mode="json")


class LlmLinearService(_LlmService):
    """Step time = base_ms + per_prefill_token_ms × prompt tokens processed + per_decode_seq_ms ×
    sequences decoding (issue 15's rule), + per_context_token_ms × context tokens attended +
    per_request_ms × requests scheduled for the first time (both default 0)."""

    kind: Literal["llm_linear"] = "llm_linear"
    base_ms: float = Field(ge=0, description="fixed time of every step")
    per_prefill_token_ms: float = Field(ge=0)
    per_decode_seq_ms: float = Field(ge=0)
    per_context_token_ms: float = Field(default=0.0, ge=0, description="per KV token attended in the step")
    per_request_ms: float = Field(default=0.0, ge=0, description="per request scheduled for the first time")


class FitProvenance(InputModel):
    """Where fitted coefficients come from: what they were fitted on, when, from which measurements,
    and how far the fit is from them."""

    model_config = ConfigDict(frozen=True)
    hardware: str = Field(min_length=1, description="the GPU (catalogue name) the runs measured")
    model: str = Field(min_length=1, description="the model (catalogue name) the runs served")
    gpus_per_replica: int = Field(default=1, ge=1, description="tensor-parallel degree of the measured engine")
    engine: str = Field(default="", description="engine and version, e.g. 'vllm 0.11.0'")
    date: str = ""
    source: str = Field(default="", description="the run folders or trace the fit read")
    fit_error: dict[str, float] = Field(default_factory=dict, description="e.g. {ttft_mape: 0.08}")


class LlmFittedService(LlmLinearService):
    """`llm_linear`'s form with coefficients calibration fitted to measured runs (`fitted_on` says
    which). Fitted step coefficients do not transfer across models, GPUs or tensor-parallel degrees
    (BLIS's fitted tables: 304 µs per decode token at TP1 but 2.84 at TP2), so a scenario on another
    one is refused."""

    kind: Literal["llm_fitted"] = "llm_fitted"  # type: ignore[assignment]
    fitted_on: FitProvenance

    def check_applies(self, model: ModelShape | None, hardware: HardwareSpec | None, tp: int) -> None:
        """Raise a one-line error when the scenario's model, hardware or TP differ from the fit's."""
        from capsim.hardware.catalogue import normalize_name
        from capsim.hardware.model_catalogue import find_model

        fit = self.fitted_on
        if model is not None:
            fitted = find_model(fit.model)
            fitted_name = fitted.name if fitted is not None else fit.model
            if normalize_name(fitted_name) != normalize_name(model.name):
                raise CapsimInputError(f"the coefficients were fitted on {fit.model}, not {model.name}: fitted "
                                       "step times do not transfer (use llm_roofline, or fit this model)",
                                       field="service.fitted_on.model")  # fmt: skip
        names = {normalize_name(n) for n in (hardware.name, *hardware.aliases)} if hardware is not None else set()
        if hardware is not None and normalize_name(fit.hardware) not in names:
            raise CapsimInputError(f"the coefficients were fitted on {fit.hardware}, not {hardware.name}: fitted "
                                   "step times do not transfer (use llm_roofline, or fit on this GPU)",
                                   field="service.fitted_on.hardware")  # fmt: skip
        if tp != fit.gpus_per_replica:
            raise CapsimInputError(f"the coefficients were fitted at {fit.gpus_per_replica} GPU(s) per replica, "
                                   f"not {tp}: fitted step times do not transfer across tensor-parallel degrees",
                                   field="service.fitted_on.gpus_per_replica")  # fmt: skip


class LlmRooflineService(_LlmService):
    """Step time from the model's shape and the GPU's peak compute and bandwidth (see
    `capsim.servicetime.llm_step`, docs/model.md "LLM step time"). Efficiency defaults and their
    sources: MFU per GPU from BLIS (`BLIS_MFU`), bandwidth efficiency 0.8 and NVLink 450 GB/s from
    AIConfigurator, all-reduce launch 20 µs from Vidur. Overheads default to 0; BLIS's fitted ones
    (126 µs per step and 32.1 µs per layer, `BLIS_STEP_OVERHEAD_US` / `BLIS_LAYER_OVERHEAD_US`) are
    what docs/validation.md "LLM step time against published vLLM measurements" uses."""

    kind: Literal["llm_roofline"] = "llm_roofline"
    precision: Literal["bf16", "fp16", "fp8"] = Field(default="bf16", description="weights (fp8 uses the FP8 peak)")
    kv_cache_dtype: Literal["bf16", "fp16", "fp8"] | None = Field(
        default=None, description="default: the activations' dtype (vLLM's kv_cache_dtype auto)"
    )
    mfu_prefill: float | None = Field(default=None, gt=0, le=1, description="default: BLIS's figure for the GPU")
    mfu_decode: float | None = Field(default=None, gt=0, le=1, description="default: BLIS's figure for the GPU")
    bandwidth_efficiency: float = Field(default=AICONFIGURATOR_BANDWIDTH_EFFICIENCY, gt=0, le=1)
    overlap: Literal["max", "sum"] = Field(default="max", description="max(compute, memory) or their sum")
    base_ms: float = Field(default=0.0, ge=0, description="fixed time of every step (scheduling, launch)")
    per_layer_us: float = Field(default=0.0, ge=0, description="fixed time per layer of every step (kernel launches)")
    per_request_ms: float = Field(default=0.0, ge=0, description="per request scheduled for the first time")
    interconnect_gbps: float = Field(default=AICONFIGURATOR_NVLINK_GBPS, gt=0, description="tp > 1 all-reduces")
    allreduce_latency_us: float = Field(default=VIDUR_ALLREDUCE_LAUNCH_US, ge=0)

    def kv_cache_dtype_resolved(self) -> str:
        """The KV cache's dtype: `kv_cache_dtype`, else the activations' — vLLM's `kv_cache_dtype: auto`
        keeps the cache in the model's dtype, 16-bit even for FP8 weights."""
        if self.kv_cache_dtype is not None:
            return self.kv_cache_dtype
        return ACTIVATION_DTYPE if self.precision == "fp8" else self.precision


def default_mfu(service: LlmRooflineService, hardware: HardwareSpec) -> tuple[float, float]:
    """(prefill, decode) MFU: the service's, else BLIS's figure for the GPU, else a one-line error
    naming the field (no sourced figure exists for that GPU)."""
    from capsim.hardware.catalogue import normalize_name

    blis = BLIS_MFU.get(normalize_name(hardware.name))
    prefill = service.mfu_prefill if service.mfu_prefill is not None else (blis[0] if blis else None)
    decode = service.mfu_decode if service.mfu_decode is not None else (blis[1] if blis else None)
    for value, field in ((prefill, "mfu_prefill"), (decode, "mfu_decode")):
        if value is None:
            raise CapsimInputError(f"no sourced default for {hardware.name} (BLIS gives H100, H200, A100 and L40S): "
                                   "give the model FLOPs utilization measured or assumed",
                                   field=f"service.{field}")  # fmt: skip
    assert prefill is not None and decode is not None
    return prefill, decode
