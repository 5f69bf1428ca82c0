"""`capsim serve`: start the bundled reference inference server.

The server needs torch, which capsim itself never imports, so it runs as a subprocess
(`python -m reference_server ...`) with the same flags; this command validates them first so that a
bad flag is one line and exit code 2, then waits for the server and passes Ctrl-C on to it.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from capsim.cli.app import app
from capsim.cli.serve_llm import LLM_MODEL_NAMES, llm_server_argv
from capsim.errors import CapsimInputError

MODEL_NAMES = ("mlp", "cnn", "transformer")
DEVICES = ("cpu", "cuda", "auto")
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def require_choice(value: str, choices: tuple[str, ...], flag: str) -> str:
    """`value` if it is one of `choices`, else a one-line input error naming the flag."""
    if value not in choices:
        raise CapsimInputError(f"expected one of {', '.join(choices)}, got {value!r}", field=flag)
    return value


def require_server_dependencies() -> None:
    """The server's imports exist (checked without importing them: torch takes seconds)."""
    missing = [m for m in ("torch", "fastapi", "uvicorn", "prometheus_client", "orjson") if not _importable(m)]
    if missing:
        raise CapsimInputError(f"the reference server needs {', '.join(missing)}: pip install 'capsim[server]' torch")


def auto_or_number(text: str, flag: str, minimum: float, integer: bool = False) -> str:
    """`auto`, or a number >= `minimum` (an integer when asked), as the server's flag takes it."""
    if text == "auto":
        return text
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value < float("inf"):  # also refuses NaN
        kind = "an integer" if integer else "a number"
        raise CapsimInputError(f"expected 'auto' or {kind} >= {minimum:g}, got {text!r}", field=flag)
    return str(value) if integer else repr(value)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_subprocess(argv: list[str]) -> int:
    """Run `argv` in the foreground; Ctrl-C / SIGTERM stop the child cleanly. Returns its exit code."""
    proc = subprocess.Popen(argv)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 130  # the shell's code for "stopped by Ctrl-C"
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells report it


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option(help="bundled model: mlp, cnn, transformer, or an LLM: llm-tiny, llm-small, "
                                            "llm-1b (OpenAI API, docs/reference_server.md 'LLM server')")] = "mlp",
    host: Annotated[str, typer.Option(help="address to bind (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind; 0 picks a free one (printed on start)")] = 8000,
    max_batch_size: Annotated[int, typer.Option(help="requests per batch at most")] = 1,
    max_wait_ms: Annotated[float, typer.Option(help="how long the oldest request waits for a fuller batch")] = 0.0,
    instances: Annotated[int, typer.Option(help="model executors sharing the queue")] = 1,
    queue_capacity: Annotated[
        str, typer.Option(metavar="auto|N", help="requests allowed to wait; more get 429 (auto: from --timeout-ms)")
    ] = "auto",
    timeout_ms: Annotated[
        str, typer.Option(metavar="auto|MS", help="queued longer -> 504 (0 = never; auto: 10 full batches, >= 100 ms)")
    ] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16 (auto: float32; bfloat16 for an "
                                            "LLM on CUDA)")] = "auto",
    batch_log: Annotated[Path | None, typer.Option(help="append one JSON line per batch to this file")] = None,
    extra_latency_ms: Annotated[float, typer.Option(help="test hook: add this to every batch")] = 0.0,
    debug_endpoints: Annotated[
        bool, typer.Option(help="all /debug routes, on any address (else read-only ones, loopback only)")
    ] = False,
    torch_threads: Annotated[int, typer.Option(help="threads per executor (0 = (cores-1)/instances)")] = 0,
    switch_interval_ms: Annotated[float, typer.Option(help="GIL switch interval (0 = Python's 5 ms)")] = 0.0,
    max_body_bytes: Annotated[
        str, typer.Option(metavar="auto|N", help="larger bodies get 413 (auto: the model's largest request)")
    ] = "auto",
    max_header_bytes: Annotated[int, typer.Option(help="a larger request line + headers gets 431")] = 16 * 1024,
    read_timeout_s: Annotated[float, typer.Option(help="request read deadline (+ body at 100 kB/s), else 408")] = 5.0,
    max_connections: Annotated[int, typer.Option(help="open connections at most; past it requests get 503")] = 1000,
    no_nvml: Annotated[bool, typer.Option("--no-nvml", help="do not try NVML (GPU telemetry off)")] = False,
    max_num_seqs: Annotated[int, typer.Option(help="LLM: sequences running at most")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(help="LLM: tokens per engine step at most")] = 2048,
    enable_chunked_prefill: Annotated[
        bool, typer.Option("--enable-chunked-prefill/--no-enable-chunked-prefill", help="LLM: split prompts over steps")
    ] = True,
    block_size: Annotated[int, typer.Option(help="LLM: tokens per KV block")] = 16,
    num_gpu_blocks: Annotated[str, typer.Option(metavar="auto|N", help="LLM: KV blocks (auto: from memory)")] = "auto",
    enable_prefix_caching: Annotated[
        bool, typer.Option("--enable-prefix-caching/--no-enable-prefix-caching", help="LLM: reuse cached prefixes")
    ] = True,
    max_model_len: Annotated[str, typer.Option(metavar="auto|N", help="LLM: prompt + output tokens at most")] = "auto",
    step_log: Annotated[Path | None, typer.Option(help="LLM: append one JSON line per engine step here")] = None,
) -> None:
    """Serve a bundled model (KServe v2 HTTP, dynamic batching, Prometheus /metrics), or an LLM preset
    (OpenAI-compatible API, continuous batching with vLLM's scheduler rules, vLLM's metric names)."""
    require_choice(model, MODEL_NAMES + LLM_MODEL_NAMES, "--model")
    require_choice(device, DEVICES, "--device")
    require_choice(dtype, (*DTYPE_NAMES, "auto"), "--dtype")
    checks = {
        "--port": 0 <= port <= 65535,
        "--max-batch-size": max_batch_size >= 1,
        "--max-wait-ms": max_wait_ms >= 0,
        "--instances": instances >= 1,
        "--extra-latency-ms": extra_latency_ms >= 0,
        "--torch-threads": torch_threads >= 0,
        "--switch-interval-ms": switch_interval_ms >= 0,
        "--max-header-bytes": max_header_bytes >= 1,
        "--read-timeout-s": read_timeout_s > 0,
        "--max-connections": max_connections >= 1,
    }
    for flag, ok in checks.items():
        if not ok:
            raise CapsimInputError("out of range (see --help)", field=flag)
    queue_capacity = auto_or_number(queue_capacity, "--queue-capacity", 1, integer=True)
    timeout_ms = auto_or_number(timeout_ms, "--timeout-ms", 0)
    max_body_bytes = auto_or_number(max_body_bytes, "--max-body-bytes", 1, integer=True)
    if model in LLM_MODEL_NAMES:
        llm_argv = llm_server_argv(
            model=model, host=host, port=port, device=device, dtype=dtype, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, enable_chunked_prefill=enable_chunked_prefill,
            block_size=block_size, num_gpu_blocks=num_gpu_blocks, enable_prefix_caching=enable_prefix_caching,
            max_model_len=max_model_len, step_log=step_log, torch_threads=torch_threads,
            max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes, read_timeout_s=read_timeout_s,
            max_connections=max_connections, debug_endpoints=debug_endpoints,
        )  # fmt: skip
        require_server_dependencies()
        raise typer.Exit(run_subprocess(llm_argv))
    if dtype == "auto":
        dtype = "float32"
    require_server_dependencies()
    argv = [
        sys.executable, "-m", "reference_server",
        "--model", model, "--host", host, "--port", str(port),
        "--max-batch-size", str(max_batch_size), "--max-wait-ms", repr(max_wait_ms),
        "--instances", str(instances), "--queue-capacity", queue_capacity,
        "--timeout-ms", timeout_ms, "--device", device, "--dtype", dtype,
        "--extra-latency-ms", repr(extra_latency_ms), "--torch-threads", str(torch_threads),
        "--max-body-bytes", max_body_bytes, "--switch-interval-ms", repr(switch_interval_ms),
        "--max-header-bytes", str(max_header_bytes), "--read-timeout-s", repr(read_timeout_s),
        "--max-connections", str(max_connections),
    ]  # fmt: skip
    if batch_log is not None:
        argv += ["--batch-log", str(batch_log)]
    if debug_endpoints:
        argv.append("--debug-endpoints")
    if no_nvml:
        argv.append("--no-nvml")
    raise typer.Exit(run_subprocess(argv))
