"""HTTP/1.1 limits that uvicorn's httptools protocol lacks: header size and read deadlines.

uvicorn bounds neither when it runs on httptools (the fast parser the server uses): a request head
is accumulated for as long as bytes keep coming (one 1 MB `X-Request-Id` per request grew the
server from 259 to 738 MB over 500 requests), and a connection that sends its head or body a byte
at a time ("slowloris") is held open for ever, because uvicorn's only timer is the keep-alive one,
armed after a response. `guarded_protocol(limits)` returns a subclass of uvicorn's protocol that adds,
per request:

- **head size**: more than `max_header_bytes` of request line and headers → 431 (the bytes of an
  unfinished head are counted as they arrive, so at most one socket read past the limit is held);
- **read deadline**: from a request's first byte, its head and body must arrive within
  `read_timeout_s` plus the body's declared length at `min_body_rate_bytes_per_s` → 408 and the
  connection is closed. Time the server itself stops reading (back-pressure, pipelining) does not
  count: the deadline starts again when reading resumes;
- **idle new connections** are closed after `idle_timeout_s` (uvicorn's keep-alive timeout), like
  an idle keep-alive connection; uvicorn never closed a connection that sent nothing.

Both errors are the server's one-line JSON (`{"error": ...}`) with `Connection: close`. Inference
itself has no deadline here: once the request is read, the batcher's queue bound applies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from reference_server.config import DEFAULT_MAX_HEADER_BYTES, DEFAULT_READ_TIMEOUT_S
from reference_server.protocol import error_body

# The slowest body the deadline allows for: 100 kB/s, a 1 Mbit/s link (Apache mod_reqtimeout's
# default minimum is 500 B/s; this server's bodies are at most a few MB, on fast links).
DEFAULT_MIN_BODY_RATE_BYTES_PER_S = 100_000.0
# How long a connection may sit idle, before its first request or between requests (uvicorn's
# `timeout_keep_alive`). The load tester pre-opens connections, so this must not be short.
DEFAULT_IDLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HttpLimits:
    """Limits on reading one request (bytes and seconds, as named)."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    min_body_rate_bytes_per_s: float = DEFAULT_MIN_BODY_RATE_BYTES_PER_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S

    def read_deadline_s(self, body_bytes: int) -> float:
        """Seconds allowed from a request's first byte to its last: the head's timeout plus the
        body at the slowest rate allowed."""
        return self.read_timeout_s + max(0, body_bytes) / self.min_body_rate_bytes_per_s


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with the server's JSON error body, closing the connection."""
    body = error_body(message)
    length = str(len(body)).encode()
    head = b"content-type: application/json\r\ncontent-length: " + length + b"\r\nconnection: close\r\n\r\n"
    return STATUS_LINE[status] + head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `limits` (see the module docstring)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the idle timer: a connection that never sends a byte is closed like an idle one."""
        super().connection_made(transport)
        self._in_head = True  # between a request's first byte and its headers' end (or idle)
        self._head_bytes = 0  # bytes received while in the head (an upper bound on its size)
        self._head_exact_bytes = 0  # request line and headers as parsed
        self._rejected = False
        self._deadline: asyncio.TimerHandle | None = None
        self._request_started_s = 0.0
        self._allowed_s = 0.0
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout_s, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the read deadline with the connection."""
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count the bytes of an unfinished head; refuse it past the limit."""
        if self._rejected:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._rejected and self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._reject(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    # -- parser callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        """A request's first byte: its read deadline starts."""
        super().on_message_begin()
        self._head_exact_bytes = 0
        self._request_started_s = self.loop.time()
        self._allowed_s = self.limits.read_timeout_s
        self._arm_deadline(self._request_started_s + self._allowed_s)

    def on_url(self, url: bytes) -> None:
        """Count the request line."""
        self._head_exact_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count each header (name, value, ': ' and CRLF)."""
        self._head_exact_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Refuse an oversized head; otherwise give the body its share of the deadline."""
        if self._head_exact_bytes > self.limits.max_header_bytes:
            self._reject(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
            return
        self._in_head = False
        self._head_bytes = 0
        self._allowed_s = self.limits.read_deadline_s(_content_length(self.headers))
        self._arm_deadline(self._request_started_s + self._allowed_s)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Ignore the rest of a refused request."""
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is read: no deadline until the next one begins."""
        if self._rejected:
            return
        self._cancel_deadline()
        self._in_head = True
        super().on_message_complete()

    # -- the deadline ----------------------------------------------------------------------------
    def _arm_deadline(self, when_s: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_at(when_s, self._on_deadline)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._rejected or self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server stopped reading (the handler has not taken the body yet, or a pipelined
            # request waits for the one before it): not the client's delay. Start the clock again.
            self._request_started_s = self.loop.time()
            self._arm_deadline(self._request_started_s + self._allowed_s)
            return
        self._reject(408, f"request not received within {self._allowed_s:g} s (read timeout)")

    def _reject(self, status: int, message: str) -> None:
        """Answer `status` if no response has started, and close the connection."""
        self._rejected = True
        self._cancel_deadline()
        cycle = self.cycle
        in_progress = cycle is not None and not cycle.response_complete and cycle.scope is self.scope
        if in_progress:
            # The handler waiting for the body learns that the client is gone, and answers nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        if not (in_progress and cycle.response_started) and not self.transport.is_closing():
            self.logger.info("%s from %s: %s", status, self.client, message)
            self.transport.write(error_response(status, message))
        self.transport.close()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to give uvicorn (`uvicorn.Config(http=...)`) for these limits."""
    attrs: dict[str, Any] = {"limits": limits, "__doc__": GuardedHttpToolsProtocol.__doc__}
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attrs)
