"""`python -m reference_server [flags]`: serve a bundled model (see `config.py` for the flags).

Prints `reference_server: listening on http://HOST:PORT` once the socket is bound (with `--port 0`
this is how a caller learns the port) and `reference_server: ready` after warm-up; logs go to
stderr.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from typing import Any, Protocol

from reference_server.config import ServerConfig, parse_config


class ListenSettings(Protocol):
    """What binding and guarding the HTTP server needs: the Triton-style server's config and the LLM
    server's (`reference_server/llm/config.py`) both have it."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def debug_endpoints(self) -> bool: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def read_timeout_s(self) -> float: ...
    @property
    def loopback_only(self) -> bool: ...


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so that port 0 works and the port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it Nagle + delayed ACK add ~40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def warn_if_exposed(config: ListenSettings) -> None:
    """One line on stderr when the server is reachable beyond this machine: it has no
    authentication, and it is a measurement tool, not a hardened front end."""
    if config.loopback_only:
        return
    debug = (
        "every /debug route is on (--debug-endpoints)"
        if config.debug_endpoints
        else "the /debug routes are off (--debug-endpoints turns them on)"
    )
    print(
        f"reference_server: warning: binding {config.host}, beyond loopback: anyone who can reach this "
        f"address can send inference requests, unauthenticated; {debug}",
        file=sys.stderr,
        flush=True,
    )


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files to `needed` (up to the hard limit): each connection is a
    file descriptor, and a common soft limit (1024) is about `--max-connections`' default."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def serve(config: ServerConfig) -> None:
    """Run the server until interrupted."""
    from reference_server.app import create_app

    if config.switch_interval_ms > 0:
        # The GIL's hand-over between the event loop and the executor threads, which on a GPU run
        # their batches mostly in Python (module calls, kernel launches). Measured on an H100, CNN
        # at saturation: 0.5 ms vs Python's 5 ms made no difference beyond machine noise (1917 vs
        # 1865 req/s); the calibration runs in benchmarks/data/h100 used 0.5 ms (docs/reference_server.md).
        sys.setswitchinterval(config.switch_interval_ms / 1e3)
    serve_app(create_app(config), config)


def serve_app(app: Any, config: ListenSettings) -> None:
    """Bind, warn beyond loopback, and run `app` under uvicorn with the HTTP guard until interrupted."""
    import uvicorn

    from reference_server.http_guard import DEFAULT_IDLE_TIMEOUT_S, HttpLimits, guarded_protocol

    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        print(f"error: cannot bind {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    host, port = sock.getsockname()[:2]
    warn_if_exposed(config)
    # Connections, plus the batch log, telemetry and torch's own files.
    raise_file_limit(config.max_connections + 256)
    uv_config = uvicorn.Config(
        app,
        # The batcher and executors use time.monotonic(), which is the asyncio loop's clock (and
        # not uvloop's): keep the standard loop.
        loop="asyncio",
        # uvicorn's httptools protocol (its "auto" choice) with a header-size limit and read deadlines.
        http=guarded_protocol(
            HttpLimits(max_header_bytes=config.max_header_bytes, read_timeout_s=config.read_timeout_s)
        ),
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=int(DEFAULT_IDLE_TIMEOUT_S),
        limit_concurrency=config.max_connections,
        backlog=4096,
    )
    server = uvicorn.Server(uv_config)
    url_host = f"[{host}]" if ":" in host else host
    print(f"reference_server: listening on http://{url_host}:{port}", flush=True)
    # uvicorn re-raises Ctrl-C after its graceful shutdown; by then there is nothing left to do.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


def llm_model_requested(argv: list[str]) -> bool:
    """Whether the flags ask for an LLM preset (`--model llm-...`): the LLM server has flags of its own."""
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            return argv[i + 1].startswith("llm-")
        if arg.startswith("--model="):
            return arg.split("=", 1)[1].startswith("llm-")
    return False


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve."""
    if llm_model_requested(sys.argv[1:] if argv is None else argv):
        from reference_server.llm.server import main as llm_main

        llm_main(argv)
        return
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: torch.cuda.is_available() is False on this machine", file=sys.stderr)
            raise SystemExit(2)
    serve(config)


if __name__ == "__main__":
    main()
