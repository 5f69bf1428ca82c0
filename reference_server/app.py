"""The HTTP application: KServe v2 routes, the simple JSON route, /metrics and the debug routes.

Handlers run on the event loop and only parse, enqueue and encode; the model runs on executor
threads (see `executor.py`), so a slow batch never delays health checks, metrics or rejections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from reference_server import __version__
from reference_server.batcher import BatcherConfig, DynamicBatcher
from reference_server.batchlog import BatchLog
from reference_server.config import ServerConfig
from reference_server.fastpath import InferenceApp
from reference_server.metrics import MetricsObserver, ServerMetrics
from reference_server.models import MODELS, ModelSpec
from reference_server.protocol import (
    error_body,
    max_request_bytes,
    model_metadata,
)
from reference_server.queue_policy import MAX_AUTO_QUEUE_CAPACITY, QueueBounds, resolve_queue_bounds
from reference_server.telemetry import TelemetryCollector, TelemetrySampler

log = logging.getLogger("reference_server")

JSON = "application/json"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


def _error(status: int, message: str) -> Response:
    return Response(content=error_body(message), status_code=status, media_type=JSON)


class ServerState:
    """Everything the routes share; built in the lifespan, on the server's event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.spec: ModelSpec = MODELS[config.model]
        self.metrics = ServerMetrics(config.model)
        self.batch_log = BatchLog(config.batch_log, ring_size=config.batch_ring_size)
        self.telemetry = TelemetrySampler(interval_s=config.telemetry_interval_ms / 1e3, use_nvml=config.nvml)
        self.metrics.registry.register(TelemetryCollector(self.telemetry))
        self.batcher: DynamicBatcher | None = None
        self.ready = False
        self.startup_error: str | None = None
        self.hardware: dict[str, Any] = {}
        self._runtime: Any = None  # reference_server.runtime.Runtime once loaded
        self.max_body_bytes = config.max_body_bytes or max_request_bytes(self.spec, config.max_batch_size)
        self.queue_bounds: QueueBounds | None = None  # chosen once the model's batch time is measured

    async def start(self) -> None:
        """Start telemetry and the batcher now; load and warm the model in the background so that
        /v2/health/live answers during warm-up."""
        loop = asyncio.get_running_loop()
        self.telemetry.start()
        self.batcher = DynamicBatcher(
            # Placeholder bounds: nothing is queued before the model is ready, and `_load` then sets
            # the bounds in force (`queue_policy.resolve_queue_bounds`).
            BatcherConfig(
                max_batch_size=self.config.max_batch_size,
                max_wait_s=self.config.max_wait_ms / 1e3,
                queue_capacity=self.config.queue_capacity or MAX_AUTO_QUEUE_CAPACITY,
            ),
            loop,
            MetricsObserver(self.metrics, self.batch_log),
        )
        self._warm_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        # torch is imported here, off the event loop: importing it takes seconds.
        loop = asyncio.get_running_loop()
        try:
            from reference_server.runtime import Runtime

            assert self.batcher is not None
            runtime = await loop.run_in_executor(None, Runtime.create, self.config, self.batcher, loop)
            self._runtime = runtime
            self.hardware = runtime.hardware
            self.metrics.bind(self.batcher, len(runtime.executors))
            await loop.run_in_executor(None, runtime.warm_up)
            max_batch_s = await loop.run_in_executor(None, runtime.max_batch_s)
            self.apply_queue_bounds(max_batch_s)
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")
            print(f"reference_server: failed: {self.startup_error}", flush=True)
            return
        self.ready = True
        self.metrics.ready.labels(self.config.model).set(1)
        print("reference_server: ready", flush=True)

    def apply_queue_bounds(self, max_batch_s: float) -> QueueBounds:
        """Set the batcher's timeout and capacity: the flags', or defaults from the measured time of a
        full batch (`queue_policy.py`)."""
        assert self.batcher is not None
        cfg = self.config
        bounds = resolve_queue_bounds(
            cfg.timeout_ms,
            cfg.queue_capacity,
            max_batch_s=max_batch_s,
            max_wait_s=cfg.max_wait_ms / 1e3,
            max_batch_size=cfg.max_batch_size,
            instances=cfg.instances,
        )
        self.batcher.config.timeout_s = bounds.timeout_s
        self.batcher.config.queue_capacity = bounds.queue_capacity
        self.queue_bounds = bounds
        timeout = "none" if bounds.timeout_s is None else f"{bounds.timeout_s * 1e3:.1f} ms"
        log.info(
            "queue bounds: timeout %s%s, capacity %d%s (a full batch of %d took %.3f ms)",
            timeout, " (auto)" if bounds.timeout_auto else "", bounds.queue_capacity,
            " (auto)" if bounds.capacity_auto else "", cfg.max_batch_size, max_batch_s * 1e3,
        )  # fmt: skip
        return bounds

    def effective_settings(self) -> dict[str, Any]:
        """The flags as in force: auto values replaced by what the server chose (for /debug/config,
        which the load tester records and calibration replays)."""
        settings = {k: (str(v) if v is not None and not isinstance(v, int | float | bool | str) else v)
                    for k, v in asdict(self.config).items()}  # fmt: skip
        settings["max_body_bytes"] = self.max_body_bytes
        if self.queue_bounds is not None:
            timeout_s = self.queue_bounds.timeout_s
            settings["timeout_ms"] = 0.0 if timeout_s is None else timeout_s * 1e3
            settings["queue_capacity"] = self.queue_bounds.queue_capacity
            settings["timeout_auto"] = self.queue_bounds.timeout_auto
            settings["queue_capacity_auto"] = self.queue_bounds.capacity_auto
        return settings

    async def stop(self) -> None:
        """Stop executors and telemetry, close the batch log."""
        if self._runtime is not None:
            self._runtime.stop()
        self.telemetry.stop()
        self.batch_log.close()


def read_only_debug_routes(config: ServerConfig) -> bool:
    """Whether GET /debug/batches, /debug/telemetry and /debug/config are served: with
    `--debug-endpoints`, or on a loopback address. The load tester reads them (the batch log and the
    settings that calibration replays), so on loopback they are on without a flag; bound beyond this
    machine they would show anyone the clients' request ids and arrival times, so there they need
    the flag. `POST /debug/stall`, which freezes the server, always needs it."""
    return config.debug_endpoints or config.loopback_only


# An integer in int64 range, ASCII digits only (no float syntax, no '+', no Unicode digits).
_QUERY_INT = re.compile(r"-?[0-9]{1,18}")


def _query_int(request: Request, name: str, default: int | None) -> int | None:
    """An integer query parameter, once: anything else (a float, text, a repeat) is a 400."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise StarletteHTTPException(400, f"query parameter '{name}' given {len(values)} times, expected once")
    text = values[0]
    if not _QUERY_INT.fullmatch(text):
        raise StarletteHTTPException(400, f"query parameter '{name}': expected an integer, got {text[:40]!r}")
    return int(text)


def add_read_only_debug_routes(app: FastAPI, state: ServerState) -> None:
    """GET /debug/batches, /debug/telemetry and /debug/config (see `read_only_debug_routes`)."""

    @app.get("/debug/batches")
    async def debug_batches(request: Request) -> Response:
        since = _query_int(request, "since", 0)
        limit = _query_int(request, "limit", None)
        lines = state.batch_log.since(since or 0, limit)
        body = b'{"batches":[' + b",".join(lines) + b'],"last_id":' + str(state.batch_log.last_id).encode() + b"}"
        return Response(content=body, media_type=JSON)

    @app.get("/debug/telemetry")
    async def debug_telemetry(request: Request) -> Response:
        since = _query_int(request, "since", 0)
        t = state.telemetry
        return _json(
            {
                "nvml_available": t.nvml_available,
                "nvml_reason": t.nvml_reason,
                "interval_s": t.interval_s,
                "samples": [s.as_dict() for s in t.since(since or 0)],
            }
        )

    @app.get("/debug/config")
    async def debug_config() -> Response:
        return _json({"config": state.effective_settings(), "model": model_metadata(state.spec),
                      "hardware": state.hardware, "version": __version__, "ready": state.ready})  # fmt: skip


def create_app(config: ServerConfig) -> InferenceApp:
    """Build the ASGI app for `config`: the inference fast path in front of FastAPI."""
    state = ServerState(config)
    spec = state.spec

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="capsim reference server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    def _unknown_model(name: str) -> Response:
        return _error(404, f"unknown model '{name}': this server serves '{spec.name}'")

    # -- health and metadata (KServe v2) ---------------------------------------------------------
    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if state.ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": state.startup_error or "warming up"}, status=503)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "capsim-reference-server", "version": __version__, "extensions": []})

    @app.post("/v2/repository/index")
    async def repository_index() -> Response:
        # Triton's model-repository index (KServe v2 extension): the one model served here, so that
        # `capsim loadtest` can default --model to it.
        return _json([{"name": spec.name, "version": "1", "state": "READY" if state.ready else "UNAVAILABLE"}])

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        if name != spec.name:
            return _unknown_model(name)
        return _json(model_metadata(spec))

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        if name != spec.name:
            return _unknown_model(name)
        if state.ready:
            return _json({"name": name, "ready": True})
        return _json({"name": name, "ready": False}, status=503)

    # -- observability ---------------------------------------------------------------------------
    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(content=generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if read_only_debug_routes(config):
        add_read_only_debug_routes(app, state)

    if config.debug_endpoints:

        @app.post("/debug/stall")
        async def debug_stall(seconds: float) -> Response:
            if not 0 <= seconds <= 3600:  # also refuses NaN
                return _error(400, "seconds must be in [0, 3600]")
            if state._runtime is None or state.batcher is None:
                return _error(503, "model is not loaded yet")
            state.batcher.stall(seconds)
            state._runtime.stall.until_mono = state.batcher.stall_until_mono
            return _json({"stalled_s": seconds})

    return InferenceApp(app, state)
