"""Command-line options of the reference LLM server (`python -m reference_server --model llm-tiny ...`).

Scheduler flags carry vLLM's names and meanings (`vllm serve --help`), so a run here and a run of
vLLM are described the same way. Imports neither torch nor the web stack: `--help` and flag errors
are instant, and `capsim serve` checks the same ranges before it starts the subprocess.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from reference_server.config import (
    AUTO,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_READ_TIMEOUT_S,
    DEVICES,
    DTYPE_NAMES,
    _auto_or,
    _non_negative_int,
    _port,
    _positive_int,
    add_connection_guard_arguments,
    is_loopback,
)
from reference_server.llm.presets import LLM_MODEL_NAMES, PRESETS

# Bytes of KV cache the CPU gets when --num-gpu-blocks is auto (llm-tiny in float32: 8,192 blocks
# of 16 tokens); on CUDA the budget is measured (app.resolve_num_blocks).
CPU_KV_BUDGET_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class LlmServerConfig:
    """Everything the LLM server needs to start (None = auto, resolved at start-up)."""

    model: str = "llm-tiny"
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    dtype: str | None = None  # None: float32 on the CPU, bfloat16 on CUDA
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    block_size: int = 16
    num_gpu_blocks: int | None = None
    enable_prefix_caching: bool = True
    max_model_len: int | None = None  # None: the preset's max_position
    step_log: Path | None = None
    step_ring_size: int = 100_000
    seed: int = 20261122
    torch_threads: int = 0
    max_body_bytes: int | None = None  # None: 64 KiB + 8 bytes per token of max_model_len
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    debug_endpoints: bool = False
    log_level: str = "info"

    @property
    def loopback_only(self) -> bool:
        """Whether the server is reachable from this machine only."""
        return is_loopback(self.host)

    @property
    def context_len(self) -> int:
        """max_model_len as in force."""
        return self.max_model_len or PRESETS[self.model].max_position

    @property
    def body_limit_bytes(self) -> int:
        """Larger request bodies get 413: room for a max_model_len prompt as a JSON list of token ids."""
        return self.max_body_bytes or 64 * 1024 + 8 * self.context_len


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option maps onto a `LlmServerConfig` field."""
    p = argparse.ArgumentParser(
        prog="python -m reference_server --model llm-tiny",
        description="capsim's reference LLM server: a Llama-shaped decoder with seeded weights, a paged KV "
        "cache and vLLM's continuous-batching rules behind an OpenAI-compatible API.",
    )
    p.add_argument("--model", choices=LLM_MODEL_NAMES, default="llm-tiny", help="model preset to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; any other warns)")
    p.add_argument("--port", type=_port, default=8000, help="port to bind; 0 picks a free one")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda when available")
    p.add_argument(
        "--dtype",
        choices=(AUTO, *DTYPE_NAMES),
        default=AUTO,
        help="weights, activations and KV cache (auto: float32 on the CPU, bfloat16 on CUDA)",
    )
    p.add_argument("--max-num-seqs", type=_positive_int, default=256, help="sequences running at most")
    p.add_argument("--max-num-batched-tokens", type=_positive_int, default=2048, help="tokens per step at most")
    p.add_argument(
        "--enable-chunked-prefill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split prompts over steps by the token budget",
    )
    p.add_argument("--block-size", type=_positive_int, default=16, help="tokens per KV block")
    p.add_argument(
        "--num-gpu-blocks",
        type=_auto_or(_positive_int),
        default=None,
        help="KV blocks (vLLM's --num-gpu-blocks-override; auto: 256 MiB on the CPU, on CUDA 90%% of "
        "the memory less the weights and 1 GiB, both capped at max-num-seqs full contexts)",
    )
    p.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse cached full blocks of equal prefixes",
    )
    p.add_argument(
        "--max-model-len",
        type=_auto_or(_positive_int),
        default=None,
        help="prompt + output tokens at most (auto: the preset's context)",
    )
    p.add_argument("--step-log", type=Path, default=None, help="append one JSON line per engine step here")
    p.add_argument(
        "--step-ring-size", type=_positive_int, default=100_000, help="step records kept in memory for GET /debug/steps"
    )
    p.add_argument("--seed", type=int, default=20261122, help="seed of the weights and of unseeded sampling")
    p.add_argument(
        "--torch-threads", type=_non_negative_int, default=0, help="intra-op CPU threads (0 = cores - 1, at least 1)"
    )
    p.add_argument(
        "--max-body-bytes",
        type=_auto_or(_positive_int),
        default=None,
        help="larger request bodies get 413 (auto: 64 KiB + 8 bytes per token of max-model-len)",
    )
    add_connection_guard_arguments(p)
    p.add_argument(
        "--debug-endpoints",
        action="store_true",
        help="serve /debug/steps and /debug/config on any address (else loopback only)",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return p  # fmt: skip


def parse_llm_config(argv: list[str] | None = None) -> LlmServerConfig:
    """Parse command-line flags (argparse exits with code 2 and one line on a bad flag)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dtype == AUTO:
        args.dtype = None
    config = LlmServerConfig(**vars(args))
    if config.max_model_len is not None and config.max_model_len > PRESETS[config.model].max_position:
        parser.error(f"--max-model-len {config.max_model_len} exceeds {config.model}'s context "
                     f"{PRESETS[config.model].max_position}")  # fmt: skip
    if config.max_num_batched_tokens < config.max_num_seqs:
        # vLLM enforces max_num_batched_tokens >= max_num_seqs (config/scheduler.py)
        parser.error(f"--max-num-batched-tokens {config.max_num_batched_tokens} must be >= --max-num-seqs "
                     f"{config.max_num_seqs}")  # fmt: skip
    return config
