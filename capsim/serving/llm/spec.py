"""The schema of `serving.mode: llm`: replicas of an LLM engine that schedules like vLLM's V1
scheduler (continuous batching under a sequence cap and a token budget, chunked prefill, a paged KV
cache, preemption by recompute, prefix caching). docs/model.md ("LLM serving") states the rules;
the defaults are vLLM's own, each cited where it is set.

The tensor-parallel degree of a replica is `hardware.gpus_per_replica` (one field: it also scales
the replica's price)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale import AutoscalingSpec, ScheduleWindow
from capsim.hardware.kv_memory import DEFAULT_GPU_MEMORY_UTILIZATION
from capsim.input_model import InputModel
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.llm.coldstart import LlmColdStart
from capsim.serving.llm.routers import ROUTERS

# vLLM v0.11 `engine/arg_utils.py` (OpenAI API server usage context): GPUs with at least 70 GiB that
# are not A100s get max_num_batched_tokens 8192 and max_num_seqs 1024; the others 2048 and 256.
BIG_GPU_GIB = 70.0
BIG_GPU_LIMITS = (1024, 8192)
SMALL_GPU_LIMITS = (256, 2048)
DEFAULT_BLOCK_SIZE = 16  # vLLM v0.11 `platforms/cuda.py`: block_size 16 on CUDA


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LlmScheduler(_Strict):
    """`serving.scheduler`: vLLM's scheduler and cache settings (same names as vLLM's engine
    arguments). Left out, `max_num_seqs` and `max_num_batched_tokens` follow vLLM's rule for the
    replica's GPU (`batch_limits`), and `kv_cache_blocks` is derived from the GPU's memory, the
    model's weights and `gpu_memory_utilization` (capsim.hardware.kv_memory)."""

    max_num_seqs: int | None = Field(default=None, ge=1, le=1_000_000, description="most requests running at once")
    max_num_batched_tokens: int | None = Field(
        default=None, ge=1, le=100_000_000, description="token budget of one engine step"
    )
    chunked_prefill: bool = Field(
        default=True, description="split prompts over steps by the token budget (vLLM V1 default: on)"
    )
    block_size: int = Field(default=DEFAULT_BLOCK_SIZE, ge=1, le=4096, description="tokens per KV block")
    kv_cache_blocks: int | None = Field(
        default=None, ge=1, le=100_000_000, description="KV blocks per replica (vLLM's num_gpu_blocks_override)"
    )
    gpu_memory_utilization: float = Field(
        default=DEFAULT_GPU_MEMORY_UTILIZATION, gt=0, le=1, description="share of GPU memory vLLM may use"
    )
    enable_prefix_caching: bool = Field(default=True, description="full KV blocks shared by prefix (V1 default: on)")
    max_model_len: int | None = Field(
        default=None, ge=2, le=100_000_000, description="longest prompt + output (default: the model's context)"
    )

    @model_validator(mode="after")
    def _budget_holds_a_batch(self) -> LlmScheduler:
        seqs, tokens = self.max_num_seqs, self.max_num_batched_tokens
        if seqs is not None and tokens is not None and tokens < seqs:
            # vLLM's SchedulerConfig refuses this too: a step could not give every sequence a token
            raise ValueError(f"max_num_batched_tokens ({tokens}) must be >= max_num_seqs ({seqs})")
        return self

    def batch_limits(self, gpu_name: str, memory_gb: float | None) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens): the given ones, else vLLM v0.11's defaults for a
        GPU of `memory_gb` (1e9 bytes; None when the catalogue does not say: the small-GPU row)."""
        big = memory_gb is not None and memory_gb * 1e9 >= BIG_GPU_GIB * 2**30 and "a100" not in gpu_name.lower()
        seqs, tokens = BIG_GPU_LIMITS if big else SMALL_GPU_LIMITS
        seqs = self.max_num_seqs if self.max_num_seqs is not None else seqs
        tokens = self.max_num_batched_tokens if self.max_num_batched_tokens is not None else max(tokens, seqs)
        if tokens < seqs:
            raise ValueError(f"max_num_batched_tokens ({tokens}) must be >= max_num_seqs ({seqs})")
        return seqs, tokens


class LlmServing(_Strict):
    """LLM engine replicas behind a load balancer: a fixed fleet, or one any autoscaler (HPA, KPA,
    KEDA, Ray Serve) scales on the engines' signals — waiting requests (vLLM's num_requests_waiting),
    running, waiting + running, KV-cache use (capsim/serving/llm/scaling.py) — each new replica
    serving after its cold start."""

    mode: Literal["llm"]
    replicas: int = Field(ge=0, le=4096, description="engine replicas at t = 0 (each `hardware.gpus_per_replica` "
                          "GPUs); the initial count under autoscaling")  # fmt: skip
    autoscaling: AutoscalingSpec | None = Field(default=None, description="any policy, on the engines' signals")
    schedule: list[ScheduleWindow] = Field(default_factory=list, description="time-of-day minimum replicas")
    clock_start_h: float = Field(default=0.0, ge=0, lt=24, description="time of day at simulated t = 0")
    cold_start: LlmColdStart = LlmColdStart()  # model load derived from the weights when not given
    scheduler: LlmScheduler = LlmScheduler()
    load_balancer: str = Field(
        default="round_robin",
        description="a balancer of capsim/serving/dataplane/balancers.py (load = requests) or an LLM router "
        "of capsim/serving/llm/routers.py (least_kv_utilization, prefix_affinity)",
    )

    @model_validator(mode="after")
    def _replicas_within_bounds(self) -> LlmServing:
        scaler = self.autoscaling
        if scaler is None and self.replicas < 1:
            raise ValueError("replicas must be >= 1 (only an autoscaler can start from zero)")
        if scaler is not None and scaler.min_replicas < 1:
            # no activator holds requests while no replica is ready: the kernel refuses them
            raise ValueError(f"autoscaling.min_replicas ({scaler.min_replicas}) must be >= 1 for LLM engines: "
                             "requests that find no replica ready are refused")  # fmt: skip
        if self.schedule and scaler is None:
            raise ValueError("schedule sets minimum replicas for an autoscaler: add an autoscaling section")
        if scaler is not None and not scaler.min_replicas <= self.replicas <= min(scaler.max_replicas, 4096):
            bounds = f"[{scaler.min_replicas}, {scaler.max_replicas}]"
            raise ValueError(f"replicas ({self.replicas}) is the initial count and must lie within autoscaling "
                             f"[min_replicas, max_replicas] = {bounds}")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _known_balancer(self) -> LlmServing:
        names = [*BALANCERS, *ROUTERS]
        if self.load_balancer not in names:
            raise ValueError(f"load_balancer: expected one of {', '.join(names)} (got {self.load_balancer!r})")
        return self
