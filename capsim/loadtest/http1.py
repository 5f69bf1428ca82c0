"""Just enough HTTP/1.1 for the open-loop sender: build one request, parse responses from a byte
stream (Content-Length or chunked bodies, keep-alive). No sockets here and no gevent: the Locust
worker owns the connections (see locustfile_openloop.py), this module only frames bytes, so it is
tested like any pure function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class ProtocolError(Exception):
    """The peer sent something this parser does not understand."""


def build_request(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """The full request as bytes, sent unchanged for every request of a run."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lowered = {k.lower() for k in headers}
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")]
    if "user-agent" not in lowered:
        lines.append("User-Agent: capsim-loadtest")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    """One parsed response: status code, body length, whether the server closes the connection."""

    status: int
    body_bytes: int
    close: bool
    headers: dict[str, str]  # only the names asked for (lower case)


class ResponseParser:
    """Incremental parser: `feed(data)` returns the responses completed by `data` (0, 1 or more).

    `on_body`, when given, receives each piece of body as soon as it is complete (a whole chunk of a
    chunked body, or whatever part of a sized body arrived): how a streamed response is read as it
    comes. `on_head(status, headers)` is called when a response's headers have been parsed."""

    MAX_HEAD_BYTES = 65_536

    def __init__(self, keep_headers: tuple[str, ...] = (), on_body: Callable[[bytes], None] | None = None,
                 on_head: Callable[[int, dict[str, str]], None] | None = None) -> None:
        self._on_body = on_body
        self._on_head = on_head
        self._keep = {name.lower().encode("latin-1") for name in keep_headers}
        self._kept: dict[str, str] = {}
        self._buffer = b""
        self._head: tuple[int, bool] | None = None  # (status, close) once headers are parsed
        self._remaining = 0  # body bytes still expected (Content-Length mode)
        self._chunked = False
        self._body_bytes = 0

    def feed(self, data: bytes) -> list[Response]:
        """Consume `data`; return the responses it completes, in order."""
        self._buffer += data
        done: list[Response] = []
        while True:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > self.MAX_HEAD_BYTES:
                        raise ProtocolError("response headers too long")
                    return done
                self._parse_head(self._buffer[:end])
                self._buffer = self._buffer[end + 4 :]
            response = self._body_chunked() if self._chunked else self._body_sized()
            if response is None:
                return done
            done.append(response)

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        length, chunked, close = None, False, parts[0] == b"HTTP/1.0"
        kept: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key in self._keep:
                kept[key.decode("latin-1")] = value.strip().decode("latin-1")
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                token = value.strip().lower()
                close = token == b"close" or (close and token != b"keep-alive")
        if not chunked and length is None and status not in (204, 304) and not 100 <= status < 200:
            raise ProtocolError("response without Content-Length or chunked encoding")
        self._head = (status, close)
        self._kept = kept
        if self._on_head is not None:
            self._on_head(status, kept)
        self._chunked = chunked
        self._remaining = length or 0
        self._body_bytes = 0

    def _finish(self) -> Response:
        assert self._head is not None
        status, close = self._head
        self._head = None
        return Response(status, self._body_bytes, close, self._kept)

    def _body_sized(self) -> Response | None:
        take = min(self._remaining, len(self._buffer))
        if self._on_body is not None and take:
            self._on_body(self._buffer[:take])
        self._remaining -= take
        self._body_bytes += take
        self._buffer = self._buffer[take:]
        return self._finish() if self._remaining == 0 else None

    def _body_chunked(self) -> Response | None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(self._buffer[:line_end].split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Last chunk, then optional trailers, then an empty line.
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    if self._buffer[line_end : line_end + 4] == b"\r\n\r\n":
                        trailer_end = line_end
                    else:
                        return None
                self._buffer = self._buffer[trailer_end + 4 :]
                return self._finish()
            if len(self._buffer) < line_end + 2 + size + 2:
                return None
            self._body_bytes += size
            if self._on_body is not None and size:
                self._on_body(self._buffer[line_end + 2 : line_end + 2 + size])
            self._buffer = self._buffer[line_end + 2 + size + 2 :]
