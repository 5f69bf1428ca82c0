"""The reference LLM server's HTTP application: OpenAI-compatible routes over the engine.

| route | what |
|---|---|
| `POST /v1/completions`, `POST /v1/chat/completions` | generation; `stream: true` answers Server-Sent Events |
| `GET /v1/models` | the one model served |
| `GET /health` | 200 `{"ready": true}` once the engine runs, else 503 |
| `GET /metrics` | Prometheus, vLLM's names (`metrics.py`) |
| `GET /debug/steps?since=ID&limit=N` | the step log's ring (loopback or `--debug-endpoints`) |
| `GET /debug/config` | the settings in force, auto values resolved (loopback or `--debug-endpoints`) |

Handlers parse, submit and stream; the engine thread does the work (`engine.py`). A client that
disconnects mid-stream aborts its request (its blocks are freed at the next step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from reference_server import __version__
from reference_server.app import _query_int, read_only_debug_routes
from reference_server.llm.config import LlmServerConfig
from reference_server.llm.engine import EngineRequest, LlmEngine
from reference_server.llm.metrics import LlmMetrics
from reference_server.llm.openai_protocol import (
    DONE,
    ApiError,
    ParsedRequest,
    chunk_bytes,
    error_chunk_bytes,
    full_response,
    parse_request,
    usage_chunk_bytes,
)
from reference_server.llm.presets import PRESETS
from reference_server.llm.runtime import LlmRuntime
from reference_server.llm.sampling import SamplingParams
from reference_server.llm.scheduler import Sequence, refusal
from reference_server.llm.steplog import StepLog
from reference_server.llm.tokenizer import EOS_ID, decode_token

log = logging.getLogger("reference_server.llm")
JSON = "application/json"
_REQUEST_ID_MAX = 128


def _json(payload: Any, status: int = 200) -> Response:
    return Response(content=orjson.dumps(payload), status_code=status, media_type=JSON)


def _api_error(exc: ApiError) -> Response:
    return Response(content=exc.body(), status_code=exc.status, media_type=JSON)


class LlmState:
    """What the routes share; the model loads in the background so /health answers during start-up."""

    def __init__(self, config: LlmServerConfig) -> None:
        self.config = config
        self.shape = PRESETS[config.model]
        self.metrics = LlmMetrics(config.model)
        self.step_log = StepLog(config.step_log, ring_size=config.step_ring_size)
        self.runtime: LlmRuntime | None = None
        self.startup_error: str | None = None

    @property
    def engine(self) -> LlmEngine | None:
        """The engine once started."""
        return None if self.runtime is None else self.runtime.engine

    @property
    def ready(self) -> bool:
        """Whether requests are served."""
        return self.engine is not None and self.engine.failed is None

    async def start(self) -> None:
        """Load the model and start the engine off the event loop."""
        self._task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            runtime = await loop.run_in_executor(None, LlmRuntime.create, self.config, self.metrics, self.step_log)
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")
            print(f"reference_server: failed: {self.startup_error}", flush=True)
            return
        self.runtime = runtime
        print("reference_server: ready", flush=True)

    async def stop(self) -> None:
        """Stop the engine, close the step log."""
        if self.runtime is not None:
            self.runtime.engine.stop()
        self.step_log.close()

    def settings(self) -> dict[str, Any]:
        """The flags as in force (auto values resolved), for /debug/config and /v1/models."""
        settings = {k: (str(v) if v is not None and not isinstance(v, int | float | bool | str) else v)
                    for k, v in asdict(self.config).items()}  # fmt: skip
        settings["max_model_len"] = self.config.context_len
        settings["max_body_bytes"] = self.config.body_limit_bytes
        if self.runtime is not None:
            settings.update(self.runtime.resolved)
        return settings


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (by Content-Length, or as a chunked body grows)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes exceeds {limit} bytes")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes")
    return bytes(body)


def create_llm_app(config: LlmServerConfig) -> FastAPI:
    """Build the ASGI app for `config`."""
    state = LlmState(config)
    shape = state.shape

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="capsim reference LLM server", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.server = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _api_error(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(ApiError)
    async def _refused(_: Request, exc: ApiError) -> Response:
        return _api_error(exc)

    @app.get("/health")
    async def health() -> Response:
        if state.ready:
            return _json({"ready": True})
        engine = state.engine
        error = state.startup_error or (engine.failed if engine is not None else None) or "loading"
        return _json({"ready": False, "error": error}, status=503)

    @app.get("/v1/models")
    async def models() -> Response:
        card = {"id": config.model, "object": "model", "created": 0, "owned_by": "capsim", "root": config.model,
                "max_model_len": config.context_len}  # fmt: skip
        return _json({"object": "list", "data": [card]})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(content=generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if read_only_debug_routes(config):  # type: ignore[arg-type]

        @app.get("/debug/steps")
        async def debug_steps(request: Request) -> Response:
            since = _query_int(request, "since", 0)
            lines = state.step_log.since(since or 0, _query_int(request, "limit", None))
            body = b'{"steps":[' + b",".join(lines) + b'],"last_id":' + str(state.step_log.last_id).encode() + b"}"
            return Response(content=body, media_type=JSON)

        @app.get("/debug/config")
        async def debug_config() -> Response:
            return _json({"config": state.settings(), "version": __version__, "ready": state.ready,
                          "hardware": state.runtime.hardware if state.runtime else {}})  # fmt: skip

    async def generate(request: Request, chat: bool) -> Response:
        arrival = time.monotonic()
        engine = state.engine
        if engine is None or engine.failed is not None:
            raise ApiError(503, "the model is not loaded yet" if engine is None else f"engine failed: {engine.failed}")
        raw = await _read_body(request, config.body_limit_bytes)
        parsed = parse_request(raw, chat, config.model, shape.vocab, config.context_len)
        assert state.runtime is not None
        why = refusal(state.runtime.scheduler_config, len(parsed.prompt), parsed.max_tokens)
        if why is not None:
            raise ApiError(400, why, "max_tokens")
        request_id = request.headers.get("x-request-id", "")[:_REQUEST_ID_MAX] or f"cmpl-{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[tuple[list[int], str | None, float]] = asyncio.Queue()

        def sink(tokens: list[int], reason: str | None, now: float) -> None:
            loop.call_soon_threadsafe(outbox.put_nowait, (tokens, reason, now))

        params = SamplingParams(parsed.max_tokens, parsed.temperature, parsed.seed, parsed.ignore_eos,
                                parsed.min_tokens)  # fmt: skip
        if parsed.seed is not None:
            import torch

            params.generator = torch.Generator().manual_seed(parsed.seed)
        seq = Sequence(request_id, parsed.prompt, parsed.max_tokens, parsed.min_tokens, parsed.ignore_eos, EOS_ID,
                       arrival_s=arrival)  # fmt: skip
        req = EngineRequest(seq, params, sink, arrival)
        engine.submit(req)
        headers = {"x-request-id": request_id}
        if parsed.stream:
            return StreamingResponse(_stream(engine, req, parsed, outbox, request_id), media_type="text/event-stream",
                                     headers=headers)  # fmt: skip
        return await _collect(engine, req, parsed, outbox, request_id, headers)

    async def _stream(engine: LlmEngine, req: EngineRequest, parsed: ParsedRequest,
                      outbox: asyncio.Queue[tuple[list[int], str | None, float]], request_id: str
                      ) -> AsyncIterator[bytes]:  # fmt: skip
        created = int(time.time())
        n_out = 0
        first = True
        try:
            while True:
                tokens, reason, _ = await outbox.get()
                if reason == "error":
                    yield error_chunk_bytes(engine.failed or "engine failed")
                    break
                for i, token in enumerate(tokens):
                    n_out += 1
                    last = reason if i == len(tokens) - 1 else None
                    yield chunk_bytes(request_id, parsed.chat, created, config.model, decode_token(token), last,
                                      role=first)  # fmt: skip
                    first = False
                if reason is not None:
                    if parsed.include_usage:
                        yield usage_chunk_bytes(request_id, parsed.chat, created, config.model, len(parsed.prompt),
                                                n_out)  # fmt: skip
                    break
            yield DONE
        finally:
            if not req.done:  # the client went away mid-stream
                engine.abort(req)

    async def _collect(engine: LlmEngine, req: EngineRequest, parsed: ParsedRequest,
                       outbox: asyncio.Queue[tuple[list[int], str | None, float]], request_id: str,
                       headers: dict[str, str]) -> Response:  # fmt: skip
        out: list[int] = []
        try:
            while True:
                tokens, reason, _ = await outbox.get()
                if reason == "error":
                    raise ApiError(500, f"engine failed: {engine.failed}")
                out += tokens
                if reason is not None:
                    break
        finally:
            if not req.done:
                engine.abort(req)
        text = "".join(decode_token(t) for t in out)
        body = full_response(request_id, parsed.chat, int(time.time()), config.model, text, reason, len(parsed.prompt),
                             len(out))  # fmt: skip
        return Response(content=body, media_type=JSON, headers=headers)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    return app
