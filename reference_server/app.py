"""The HTTP application: KServe v2 routes, the simple JSON route, /metrics and the debug hooks.

Handlers run on the event loop and only parse, enqueue and encode; the model runs on executor
threads (see `executor.py`), so a slow batch never delays health checks, metrics or rejections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
    model_metadata,
)
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

    async def start(self) -> None:
        """Start telemetry and the batcher now; load and warm the model in the background so that
        /v2/health/live answers during warm-up."""
        loop = asyncio.get_running_loop()
        self.telemetry.start()
        self.batcher = DynamicBatcher(
            BatcherConfig(
                max_batch_size=self.config.max_batch_size,
                max_wait_s=self.config.max_wait_ms / 1e3,
                queue_capacity=self.config.queue_capacity,
                timeout_s=self.config.timeout_s,
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
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")
            print(f"reference_server: failed: {self.startup_error}", flush=True)
            return
        self.ready = True
        self.metrics.ready.labels(self.config.model).set(1)
        print("reference_server: ready", flush=True)

    async def stop(self) -> None:
        """Stop executors and telemetry, close the batch log."""
        if self._runtime is not None:
            self._runtime.stop()
        self.telemetry.stop()
        self.batch_log.close()


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

    @app.get("/debug/batches")
    async def debug_batches(since: int = 0, limit: int | None = None) -> Response:
        lines = state.batch_log.since(since, limit)
        body = b'{"batches":[' + b",".join(lines) + b'],"last_id":' + str(state.batch_log.last_id).encode() + b"}"
        return Response(content=body, media_type=JSON)

    @app.get("/debug/telemetry")
    async def debug_telemetry(since: int = 0) -> Response:
        t = state.telemetry
        return _json(
            {
                "nvml_available": t.nvml_available,
                "nvml_reason": t.nvml_reason,
                "interval_s": t.interval_s,
                "samples": [s.as_dict() for s in t.since(since)],
            }
        )

    @app.get("/debug/config")
    async def debug_config() -> Response:
        settings = {k: (str(v) if v is not None and not isinstance(v, int | float | bool | str) else v)
                    for k, v in asdict(config).items()}  # fmt: skip
        return _json({"config": settings, "model": model_metadata(spec), "hardware": state.hardware,
                      "version": __version__, "ready": state.ready})  # fmt: skip

    if config.debug_endpoints:

        @app.post("/debug/stall")
        async def debug_stall(seconds: float) -> Response:
            if not 0 <= seconds <= 3600:
                return _error(400, "seconds must be in [0, 3600]")
            if state._runtime is None or state.batcher is None:
                return _error(503, "model is not loaded yet")
            state.batcher.stall(seconds)
            state._runtime.stall.until_mono = state.batcher.stall_until_mono
            return _json({"stalled_s": seconds})

    return InferenceApp(app, state)
