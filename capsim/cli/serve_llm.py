"""The reference LLM server's command line as `capsim serve --model llm-...` builds it.

The LLM presets live in reference_server/llm/presets.py, which capsim does not import (the server is
a separate package that needs torch); `LLM_MODEL_NAMES` repeats their names and
tests/reference_server/test_cli.py checks that both agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from capsim.errors import CapsimInputError

LLM_MODEL_NAMES = ("llm-tiny", "llm-small", "llm-1b")


def llm_server_argv(
    *,
    model: str,
    host: str,
    port: int,
    device: str,
    dtype: str,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    enable_chunked_prefill: bool,
    block_size: int,
    num_gpu_blocks: str,
    enable_prefix_caching: bool,
    max_model_len: str,
    step_log: Path | None,
    torch_threads: int,
    max_body_bytes: str,
    max_header_bytes: int,
    read_timeout_s: float,
    max_connections: int,
    debug_endpoints: bool,
) -> list[str]:
    """`python -m reference_server --model llm-...` with these flags (ranges checked here: one line, exit 2)."""
    for flag, ok in {"--max-num-seqs": max_num_seqs >= 1, "--max-num-batched-tokens": max_num_batched_tokens >= 1,
                     "--block-size": block_size >= 1}.items():  # fmt: skip
        if not ok:
            raise CapsimInputError("out of range (see --help)", field=flag)
    if max_num_batched_tokens < max_num_seqs:
        raise CapsimInputError(f"must be >= --max-num-seqs {max_num_seqs} (vLLM's rule), got {max_num_batched_tokens}",
                               field="--max-num-batched-tokens")  # fmt: skip
    from capsim.cli.serve import auto_or_number

    argv = [
        sys.executable, "-m", "reference_server", "--model", model, "--host", host, "--port", str(port),
        "--device", device, "--dtype", dtype, "--max-num-seqs", str(max_num_seqs),
        "--max-num-batched-tokens", str(max_num_batched_tokens), "--block-size", str(block_size),
        "--num-gpu-blocks", auto_or_number(num_gpu_blocks, "--num-gpu-blocks", 1, integer=True),
        "--max-model-len", auto_or_number(max_model_len, "--max-model-len", 1, integer=True),
        "--torch-threads", str(torch_threads),
        "--max-body-bytes", auto_or_number(max_body_bytes, "--max-body-bytes", 1, integer=True),
        "--max-header-bytes", str(max_header_bytes), "--read-timeout-s", repr(read_timeout_s),
        "--max-connections", str(max_connections),
        "--enable-chunked-prefill" if enable_chunked_prefill else "--no-enable-chunked-prefill",
        "--enable-prefix-caching" if enable_prefix_caching else "--no-enable-prefix-caching",
    ]  # fmt: skip
    if step_log is not None:
        argv += ["--step-log", str(step_log)]
    if debug_endpoints:
        argv.append("--debug-endpoints")
    return argv
