"""Command-line options of the reference server (`python -m reference_server`).

The same flags are accepted by `capsim serve`, which passes them through to a subprocess. This
module imports neither torch nor the web stack, so `--help` and flag errors are instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAMES = ("mlp", "cnn", "transformer")
DEVICES = ("cpu", "cuda", "auto")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
DEFAULT_MAX_HEADER_BYTES = 16 * 1024  # uvicorn's own limit on its h11 parser (h11_max_incomplete_event_size)
DEFAULT_READ_TIMEOUT_S = 5.0
# Open connections at most (uvicorn's limit_concurrency: past it every request gets 503). Above the
# load tester's default in-flight cap (500 per worker) and below the usual file-descriptor limit.
DEFAULT_MAX_CONNECTIONS = 1000
AUTO = "auto"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start (times in the units their names say)."""

    model: str = "mlp"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 1
    max_wait_ms: float = 0.0
    instances: int = 1
    queue_capacity: int | None = None  # None = auto (reference_server.queue_policy)
    timeout_ms: float | None = None  # None = auto (reference_server.queue_policy); 0 = never
    device: str = "auto"
    dtype: str = "float32"
    batch_log: Path | None = None
    extra_latency_ms: float = 0.0
    debug_endpoints: bool = False
    torch_threads: int = 0  # 0 = (cores - 1) / instances, at least 1
    switch_interval_ms: float = 0.0  # 0 = Python's own (5 ms)
    max_body_bytes: int = 0  # 0 = what the model's largest request needs (protocol.max_request_bytes)
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    telemetry_interval_ms: float = 100.0
    nvml: bool = True
    seed: int = 20261122
    batch_ring_size: int = 100_000
    log_level: str = "info"

    @property
    def loopback_only(self) -> bool:
        """Whether the server is reachable from this machine only."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (anything else, 0.0.0.0 included, reaches beyond this machine)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only 'localhost' is known to stay on this machine
        return False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _auto_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag type that takes `auto` (None: chosen by the server) or what `parse` takes."""

    def parse_auto(text: str) -> Any:
        if text == AUTO:
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None

    parse_auto.__name__ = parse.__name__
    return parse_auto


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def add_connection_guard_arguments(p: argparse.ArgumentParser) -> None:
    """The connection limits every bundled server takes (reference_server/http_guard.py enforces them):
    header size, read deadline and open connections."""
    p.add_argument(
        "--max-header-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_HEADER_BYTES,
        help="a larger request line + headers gets 431",
    )
    p.add_argument(
        "--read-timeout-s",
        type=_positive_float,
        default=DEFAULT_READ_TIMEOUT_S,
        help="a request's headers must arrive within this, its body within this plus its length at "
        "100 kB/s, else 408 and the connection is closed",
    )
    p.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections at most; past it requests get 503",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option maps onto a `ServerConfig` field."""
    p = argparse.ArgumentParser(
        prog="python -m reference_server",
        description="capsim's reference inference server: bundled PyTorch models behind a dynamic "
        "batcher, KServe v2 HTTP protocol, Prometheus metrics and NVML telemetry. The LLM presets "
        "(--model llm-tiny, llm-small, llm-1b) take flags of their own: --model llm-tiny --help.",
    )
    p.add_argument("--model", choices=MODEL_NAMES, default="mlp", help="bundled model to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; any other warns)")
    p.add_argument("--port", type=_port, default=8000, help="port to bind; 0 picks a free one")
    p.add_argument("--max-batch-size", type=_positive_int, default=1, help="requests per batch at most")
    p.add_argument(
        "--max-wait-ms",
        type=_non_negative_float,
        default=0.0,
        help="how long the oldest request may wait for a batch to fill (0 = greedy)",
    )
    p.add_argument("--instances", type=_positive_int, default=1, help="model executors sharing the queue")
    p.add_argument(
        "--queue-capacity",
        type=_auto_or(_positive_int),
        default=None,
        help="requests allowed to wait; more are rejected with 429 (auto: what --timeout-ms lets through)",
    )
    p.add_argument(
        "--timeout-ms",
        type=_auto_or(_non_negative_float),
        default=None,
        help="a request still queued this long after arrival gets 504 (0 = never; auto: 10 max-size "
        "batch times, at least 100 ms)",
    )
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda when available")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="precision of the weights and activations")
    p.add_argument("--batch-log", type=Path, default=None, help="append one JSON line per batch here")
    p.add_argument(
        "--extra-latency-ms", type=_non_negative_float, default=0.0, help="test hook: add this much time to every batch"
    )
    p.add_argument(
        "--debug-endpoints",
        action="store_true",
        help="serve every /debug route (POST /debug/stall included) on any address; without it only the "
        "read-only ones, and only when bound to loopback",
    )
    p.add_argument(
        "--torch-threads",
        type=_non_negative_int,
        default=0,
        help="intra-op CPU threads per executor (0 = (cores - 1) / instances, at least 1)",
    )
    p.add_argument(
        "--switch-interval-ms",
        type=_non_negative_float,
        default=0.0,
        help="how long a thread holds the GIL while another waits for it (sys.setswitchinterval; 0 = Python's 5 ms)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_auto_or(_positive_int),
        default=0,
        help="larger request bodies get 413 (auto: what the model's largest request needs)",
    )
    add_connection_guard_arguments(p)
    p.add_argument("--telemetry-interval-ms", type=_non_negative_float, default=100.0, help="telemetry sampling period")
    p.add_argument("--no-nvml", dest="nvml", action="store_false", help="do not try NVML (GPU telemetry off)")
    p.add_argument("--seed", type=int, default=20261122, help="seed of the model weights")
    p.add_argument(
        "--batch-ring-size",
        type=_positive_int,
        default=100_000,
        help="batch records kept in memory for GET /debug/batches",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return p  # fmt: skip


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    """Parse command-line flags (argparse exits with code 2 and one line on a bad flag)."""
    args = build_parser().parse_args(argv)
    if args.telemetry_interval_ms <= 0:
        build_parser().error("--telemetry-interval-ms must be > 0")
    if args.max_body_bytes is None:
        args.max_body_bytes = 0
    return ServerConfig(**vars(args))
