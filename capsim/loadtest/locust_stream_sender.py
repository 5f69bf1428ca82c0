"""How an open-loop worker sends streamed LLM requests (`--protocol openai`; Locust processes only:
this imports gevent).

`StreamSender` has the interface of the other senders (locust_senders.py): `send(intended_s)` at the
scheduled instant, a cap on requests in flight, `drain`, `abandon`. Request *k* of this worker's
share is arrival `index + k·n_workers` of the drawn schedule; its token counts are entry *k* of the
worker's share of the counts, and its body is built at the send (`openai_request.request_bytes`).
It carries `X-Request-Id: s<step>-<arrival number>`, which the reference LLM server writes into its
step log, so calibration can follow each request through the engine's steps.

Each request runs in its own greenlet on a keep-alive connection (LLM request rates are tens per
second, where a greenlet per request costs nothing that matters, and a stream holds its connection
for seconds). The response body is read as it arrives: every completed HTTP chunk goes to the SSE
parser with the clock reading of the `recv` that brought it (`sse.py` turns those into the first
token, the gaps and the end). Interrupted requests keep what they received so far.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import gevent
from gevent.pool import Pool
from geventhttpclient.url import URL

from capsim.loadtest.http1 import ProtocolError, Response, ResponseParser, build_request
from capsim.loadtest.locust_senders import IDLE_REUSE_S, PREOPEN_CONNECTIONS, _error_text
from capsim.loadtest.openai_request import request_bytes
from capsim.loadtest.records import RequestRecorder
from capsim.loadtest.sse import SseParser, StreamResult

EVENT_STREAM = "text/event-stream"
KEEP_ERROR_BYTES = 2048  # of a refusal's body: enough for an OpenAI error object's message


def refusal_text(status: int, body: bytes) -> str:
    """`HTTP <status>`, with the server's message when the body is an OpenAI-style error object
    (`{"error": {"message": ...}}`, or FastAPI's `{"detail": ...}`): e.g. a prompt over the context
    length, or a field the server does not accept."""
    message = None
    try:
        payload = json.loads(body)
        error = payload.get("error", payload.get("detail")) if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
    except ValueError:
        pass
    return f"HTTP {status}: {str(message)[:200]}" if message else f"HTTP {status}"


def llm_fields(result: StreamResult | None, started: float, requested: tuple[int, int],
               request_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The LLM columns of a request's row (records.LLM_COLUMNS) from what its stream told, times on
    the perf_counter clock with `started` the send."""
    fields: dict[str, Any] = {"request_id": request_id, "requested_input_tokens": requested[0],
                              "requested_output_tokens": requested[1]}
    if result is None:
        return fields
    usage = result.completion_tokens is not None
    fields.update({
        "ttft_ms": (result.first_token_s - started) * 1000.0 if result.first_token_s is not None else None,
        "itl_ms": result.itl_ms(),
        "input_tokens": result.prompt_tokens if result.prompt_tokens is not None else requested[0],
        "output_tokens": result.output_tokens,
        "chunks": result.chunks,
        "usage_reported": usage,
    })
    return fields


class _Stream:
    """One request in flight: its socket, its parsers and what they have seen."""

    def __init__(self, intended_s: float, requested: tuple[int, int], request_id: str) -> None:
        self.intended_s = intended_s
        self.requested = requested
        self.request_id = request_id
        self.sent_s = time.time()
        self.started = time.perf_counter()
        self.now = self.started  # perf_counter of the recv being parsed
        self.sse = SseParser()
        self.status = 0
        self.content_type = ""
        self.other_body = b""  # the start of a body that is not a stream (a refusal's error object)
        self.http = ResponseParser(keep_headers=("content-type",), on_body=self._body, on_head=self._head)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.content_type = headers.get("content-type", "")

    def _body(self, data: bytes) -> None:
        if self.status == 200 and self.content_type.startswith(EVENT_STREAM):
            self.sse.feed(data, self.now)
        elif len(self.other_body) < KEEP_ERROR_BYTES:
            self.other_body += data[: KEEP_ERROR_BYTES - len(self.other_body)]


class StreamSender:
    """Streamed OpenAI-compatible requests, one greenlet each, on keep-alive connections."""

    def __init__(self, url: str, spec: dict[str, Any], max_in_flight: int, timeout_s: float,
                 recorder: RequestRecorder, tokens: list[list[int]], index: int, n_workers: int,
                 step: int = 0) -> None:  # fmt: skip
        parsed = URL(url)
        self.address = (parsed.host, parsed.port or 80)
        self.host_header = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        self.spec = spec
        self.openai = dict(spec["openai"])
        self.headers = {**dict(spec.get("headers") or {}), "Accept": EVENT_STREAM}
        self.timeout_s = timeout_s
        self.recorder = recorder
        self.tokens = tokens
        self.index, self.n_workers = index, max(n_workers, 1)
        self.step = step
        self.sent = 0  # requests of this worker's share sent so far
        self.pool = Pool(max_in_flight)
        self.idle: list[tuple[socket.socket, float]] = []  # keep-alive connections and when they went idle
        self.pending: dict[Any, _Stream] = {}  # greenlet -> its request
        self.stopped = False

    def prewarm(self) -> None:
        """Open a few connections before the schedule starts (connecting later counts as send lag)."""
        for _ in range(min(PREOPEN_CONNECTIONS, self.pool.size or PREOPEN_CONNECTIONS)):
            try:
                self.idle.append((self._connect(), time.monotonic()))
            except OSError:
                return  # the first send will report the error

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _take_connection(self) -> socket.socket:
        while self.idle:
            sock, since = self.idle.pop()
            if time.monotonic() - since < IDLE_REUSE_S:  # the server may close an old idle one any moment
                return sock
            with contextlib.suppress(OSError):
                sock.close()
        return self._connect()

    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self.pool)

    def full(self) -> bool:
        """Whether the next send has to wait for a response first."""
        return bool(self.pool.full())

    def send(self, intended_s: float) -> None:
        """Start the next request of the share in its own greenlet (waiting for a slot at the cap)."""
        k = self.sent
        self.sent += 1
        pair = self.tokens[k % len(self.tokens)] if self.tokens else [1, 1]
        self.pool.spawn(self._run, intended_s, self.index + k * self.n_workers, (int(pair[0]), int(pair[1])))

    def _run(self, intended_s: float, number: int, requested: tuple[int, int]) -> None:
        if self.stopped:
            return
        o = self.openai
        body = request_bytes(o["endpoint"], o["model"], number, requested[0], requested[1], bool(o["force_length"]))
        request_id = f"s{self.step}-{number}"
        wire = build_request("POST", self.spec["path"], self.host_header, {**self.headers, "X-Request-Id": request_id},
                             body)
        stream = _Stream(intended_s, requested, request_id)
        me = gevent.getcurrent()
        self.pending[me] = stream
        sock: socket.socket | None = None
        response: Response | None = None
        error: str | None = None
        try:
            with gevent.Timeout(self.timeout_s, TimeoutError(f"no complete response within {self.timeout_s:g} s")):
                sock = self._take_connection()
                stream.started, stream.sent_s = time.perf_counter(), time.time()
                sock.sendall(wire)
                while response is None:
                    data = sock.recv(65_536)
                    stream.now = time.perf_counter()
                    if not data:
                        raise ConnectionResetError("connection closed by the server")
                    done = stream.http.feed(data)
                    response = done[0] if done else None
        except (OSError, ProtocolError, ValueError, TimeoutError) as exc:
            error = _error_text(exc)
        end = time.perf_counter()
        if self.pending.pop(me, None) is None:
            return  # abandoned meanwhile: already recorded as interrupted
        self._release(sock, response, error)
        self._record(stream, response, error, end)

    def _release(self, sock: socket.socket | None, response: Response | None, error: str | None) -> None:
        if sock is None:
            return
        if error is None and response is not None and not response.close:
            self.idle.append((sock, time.monotonic()))
        else:
            with contextlib.suppress(OSError):
                sock.close()

    def _record(self, stream: _Stream, response: Response | None, error: str | None, end: float) -> None:
        status = response.status if response is not None else 0
        result: StreamResult | None = None
        if error is None and status >= 400:
            error = refusal_text(status, stream.other_body)
        elif error is None and not stream.content_type.startswith(EVENT_STREAM):
            error = (f"not a stream: the endpoint answered {stream.content_type or 'no content type'} "
                     "to stream: true")  # fmt: skip
        elif error is None:
            result = stream.sse.close(end)
            error = result.error
        elif stream.status == 200:
            result = stream.sse.result  # a timeout or a reset mid-stream: keep what came
        last = result.last_event_s if result is not None and result.last_event_s is not None else end
        latency_ms = (last - stream.started) * 1000.0
        n_bytes = response.body_bytes if response is not None else 0
        self.recorder.record(stream.intended_s, stream.sent_s, latency_ms, status, n_bytes, error,
                             self.spec["name"], llm=llm_fields(result, stream.started, stream.requested,
                                                               stream.request_id))

    def drain(self, timeout_s: float) -> None:
        """Wait for the requests in flight, at most `timeout_s`."""
        self.pool.join(timeout=timeout_s)

    def abandon(self) -> int:
        """Record every request still in flight as interrupted (with what its stream told so far)
        and stop its greenlet."""
        self.stopped = True
        pending, self.pending = self.pending, {}
        for stream in pending.values():
            received = stream.sse.result if stream.status == 200 else None
            self.recorder.record_interrupted(stream.intended_s, stream.sent_s, self.spec["name"],
                                             llm=llm_fields(received, stream.started, stream.requested,
                                                            stream.request_id))
        self.pool.kill(block=False)
        return len(pending)
