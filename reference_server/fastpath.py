"""The inference routes as a bare ASGI handler in front of the FastAPI app.

`POST /v2/models/{name}/infer` and `POST /predict/{name}` are the only hot paths, and the web
framework's per-request machinery (router, middleware stack, dependency solving, Request and Response
objects) cost more CPU than parsing the request itself: profiled at 400 req/s on the MLP it was most
of the server's time outside the model. Every other route (health, metadata, /metrics, debug) goes
to FastAPI unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from reference_server.batcher import BatchFailed, QueueFull, QueueTimeout
from reference_server.protocol import (
    ProtocolError,
    checked_request_id,
    encode_simple_response,
    encode_v2_response,
    error_body,
    parse_simple,
    parse_v2_infer,
    timing_headers,
)

if TYPE_CHECKING:
    from reference_server.app import ServerState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_V2_PREFIX, _V2_SUFFIX, _PREDICT_PREFIX = "/v2/models/", "/infer", "/predict/"
_JSON_HEADER = (b"content-type", b"application/json")
_BINARY_HEADER = (b"content-type", b"application/octet-stream")
_CLOSE_HEADER = (b"connection", b"close")
# A body over the limit by at most this much is read and dropped, so that the client, still
# writing, reads the 413 instead of a reset (Go's net/http drains 256 KiB the same way); a larger
# one is refused at once and the connection closed, so nobody can make the server read gigabytes.
DRAIN_BYTES = 256 * 1024


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def route(path: str) -> tuple[str, str] | None:
    """(model name, endpoint) for an inference path, else None."""
    if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
        name = path[len(_V2_PREFIX) : -len(_V2_SUFFIX)]
        return (name, "v2") if name and "/" not in name else None
    if path.startswith(_PREDICT_PREFIX):
        name = path[len(_PREDICT_PREFIX) :]
        return (name, "predict") if name and "/" not in name else None
    return None


async def read_body(scope: Scope, receive: Receive, limit_bytes: int) -> bytes:
    """The request body, refusing more than `limit_bytes` (413) without keeping the excess."""
    declared = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise ProtocolError(400, "invalid Content-Length header") from None

    def refuse(size: int, close: bool) -> ProtocolError:
        message = f"request body of {size} bytes exceeds the limit of {limit_bytes}"
        return ProtocolError(413, message, close_connection=close)

    if declared is not None and declared > limit_bytes + DRAIN_BYTES:
        raise refuse(declared, close=True)
    too_big = declared is not None and declared > limit_bytes
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit_bytes:
            too_big = True
            if size > limit_bytes + DRAIN_BYTES:  # no (honest) Content-Length: stop reading
                raise refuse(size, close=True)
        if not too_big:
            chunks.append(chunk)
    if too_big:
        raise refuse(declared if declared is not None else size, close=False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None, binary: bool = False
) -> None:
    content_type = _BINARY_HEADER if binary else _JSON_HEADER
    headers = [content_type, (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InferenceApp:
    """ASGI app: inference requests handled here, everything else by `fallback` (FastAPI)."""

    def __init__(self, fallback: ASGIApp, state: ServerState) -> None:
        self.fallback = fallback
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = route(scope["path"])
            if target is not None:
                await self.infer(scope, receive, send, *target)
                return
        await self.fallback(scope, receive, send)

    async def infer(self, scope: Scope, receive: Receive, send: Send, name: str, endpoint: str) -> None:
        """Parse, queue, wait for the batch, answer (with the timing headers)."""
        t0 = time.perf_counter()
        state = self.state
        spec, config, metrics = state.spec, state.config, state.metrics
        try:
            header_id = checked_request_id(_header(scope, b"x-request-id"), "X-Request-Id header")
            if name != spec.name:
                metrics.count(endpoint, 404, model="(unknown)")
                await _respond(send, 404, error_body(f"unknown model '{name}': this server serves '{spec.name}'"))
                return
            if not state.ready or state.batcher is None:
                raise ProtocolError(503, f"model '{name}' is not ready: {state.startup_error or 'warming up'}")
            body = await read_body(scope, receive, state.max_body_bytes)
            binary_output = False
            if endpoint == "v2":
                json_length = _header(scope, b"inference-header-content-length")
                try:
                    header_bytes = None if json_length is None else int(json_length)
                except ValueError:
                    raise ProtocolError(400, "invalid Inference-Header-Content-Length header") from None
                parsed = parse_v2_infer(body, spec, config.max_batch_size, header_bytes)
                items, request_id, binary_output = parsed.items, parsed.request_id, parsed.binary_output
                body_id = checked_request_id(request_id, "id")
            else:
                items, request_id, body_id = parse_simple(body, spec), None, None
            log_id = header_id if body_id is None else body_id
            try:
                future = state.batcher.submit(items, log_id)
            except QueueFull as exc:
                raise ProtocolError(429, str(exc)) from None
            try:
                result = await future
            except QueueTimeout:
                timeout_ms = (state.batcher.config.timeout_s or 0.0) * 1e3
                raise ProtocolError(504, f"timed out after {timeout_ms:g} ms in the queue") from None
            except BatchFailed as exc:
                raise ProtocolError(500, f"inference failed: {exc}") from None
        except ProtocolError as exc:
            metrics.count(endpoint, exc.status)
            await _respond(send, exc.status, error_body(exc.message), [_CLOSE_HEADER] if exc.close_connection else None)
            return
        except ClientGone:
            metrics.count(endpoint, 499)  # nginx's code for "client closed request"
            return
        headers = [(k.lower().encode(), v.encode()) for k, v in timing_headers(result).items()]
        if endpoint == "v2":
            payload, json_bytes = encode_v2_response(spec, result, request_id, binary_output)
            if json_bytes is not None:
                headers.append((b"inference-header-content-length", str(json_bytes).encode()))
        else:
            payload = encode_simple_response(spec, result)
        await _respond(send, 200, payload, headers, binary=binary_output)
        metrics.count(endpoint, 200)
        metrics.observe_latency(time.perf_counter() - t0)
