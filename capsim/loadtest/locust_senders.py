"""How an open-loop worker puts requests on the wire (Locust processes only: this imports gevent).

`RawSender` (plain http): the scheduler's own greenlet writes the pre-built request bytes on an idle
keep-alive connection at the send time, and one reader greenlet per connection parses responses
(`http1.py`). Sending costs one `send` call, with no greenlet to schedule first, so the recorded
send time is the moment the bytes leave, and a burst of responses cannot slip in between the
scheduler's wake-up and the send. One request per connection at a time (no pipelining): the number
of connections is the number of requests in flight, capped by --max-in-flight.

`PooledSender` (https, or anything RawSender cannot parse): one greenlet per request through
geventhttpclient's connection pool; about twice the CPU per request.

Neither goes through Locust's `request` event (whose per-request statistics cost ~70 µs of CPU);
both record straight into capsim's recorder. When the run is stopped, `abandon()` records every
request still in flight as interrupted (send time, no latency) and drops its connection, so that
no request that left is missing from the run folder and none is recorded twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Pool
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL

from capsim.loadtest.http1 import ProtocolError, ResponseParser, build_request
from capsim.loadtest.records import NO_SERVER_TIMES, SERVER_HEADERS, RequestRecorder, ServerTimes, server_times

PREOPEN_CONNECTIONS = 16
IDLE_REUSE_S = 2.0  # idle connections older than this are not reused
WATCHDOG_INTERVAL_S = 0.1


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    pending: tuple[float, float, float] | None = None  # intended_s, sent_s, perf_counter at send
    closed: bool = False
    idle_since: float = 0.0  # time.monotonic() when it last became idle


class RawSender:
    """Keep-alive HTTP/1.1 connections written by the scheduler, read by one greenlet each."""

    def __init__(self, url: str, spec: dict[str, Any], max_in_flight: int, timeout_s: float,
                 recorder: RequestRecorder) -> None:
        parsed = URL(url)
        self.address = (parsed.host, parsed.port or 80)
        host_header = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        body = (spec.get("body") or "").encode("utf-8")
        self.request = build_request(spec["method"], spec["path"], host_header, dict(spec.get("headers") or {}), body)
        self.name = spec["name"]
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.recorder = recorder
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.slot = Event()
        self.stopped = False  # set by abandon(): nothing is sent after the last rows went
        self.watchdog = gevent.spawn(self._watch_timeouts)

    def prewarm(self) -> None:
        """Open a few connections before the schedule starts (connecting later counts as send lag)."""
        for _ in range(min(PREOPEN_CONNECTIONS, self.max_in_flight)):
            try:
                self.idle.append(self._connect())
            except OSError:
                return  # the first send will report the error

    def _connect(self) -> _Connection:
        sock = socket.create_connection(self.address, timeout=self.timeout_s)
        sock.settimeout(None)  # the watchdog enforces per-request deadlines; idle connections may wait
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(sock, idle_since=time.monotonic())
        gevent.spawn(self._read, conn)
        return conn

    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self.busy)

    def full(self) -> bool:
        """Whether the next send has to wait for a response first."""
        return not self.idle and len(self.busy) >= self.max_in_flight

    def send(self, intended_s: float) -> None:
        """Send one request now (after waiting for a free slot if the cap is reached)."""
        while self.full() and not self.stopped:
            self.slot.clear()
            self.slot.wait()
        if self.stopped:
            return
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            # A connection idle for long may be closed by the server at any moment (uvicorn's default
            # keep-alive is 5 s): a request written into that race fails for nothing. Reconnect instead.
            if time.monotonic() - candidate.idle_since < IDLE_REUSE_S:
                conn = candidate
                break
            self._close(candidate)
        if conn is None:
            try:
                conn = self._connect()
            except OSError as exc:
                now = time.time()
                self.recorder.record(intended_s, now, 0.0, 0, 0, _error_text(exc), self.name)
                return
        self.busy.add(conn)
        conn.pending = (intended_s, time.time(), time.perf_counter())
        try:
            conn.sock.sendall(self.request)
        except OSError as exc:
            self._fail(conn, exc)

    def _finish(self, conn: _Connection, status: int, n_bytes: int, error: str | None,
                server: ServerTimes = NO_SERVER_TIMES) -> None:
        assert conn.pending is not None
        intended_s, sent_s, started = conn.pending
        conn.pending = None
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.recorder.record(intended_s, sent_s, latency_ms, status, n_bytes, error, self.name, server)

    def _fail(self, conn: _Connection, exc: BaseException) -> None:
        if conn.pending is not None:
            self._finish(conn, 0, 0, _error_text(exc))
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()
        self.slot.set()

    def _read(self, conn: _Connection) -> None:
        parser = ResponseParser(keep_headers=tuple(SERVER_HEADERS))
        while not conn.closed:
            try:
                data = conn.sock.recv(65_536)
                if not data:
                    raise ConnectionResetError("connection closed by the server")
                responses = parser.feed(data)
            except (OSError, ProtocolError, ValueError) as exc:
                self._fail(conn, exc)
                return
            for response in responses:
                if conn.pending is None:  # an answer nobody asked for: the stream is out of step
                    self._fail(conn, ProtocolError("unexpected response"))
                    return
                self._finish(conn, response.status, response.body_bytes,
                             None if response.status < 400 else f"HTTP {response.status}",
                             server_times(response.headers.get) if response.headers else NO_SERVER_TIMES)
                self.busy.discard(conn)
                if response.close:
                    self._close(conn)
                    return
                conn.idle_since = time.monotonic()
                self.idle.append(conn)
                self.slot.set()

    def _watch_timeouts(self) -> None:
        while True:
            gevent.sleep(WATCHDOG_INTERVAL_S)
            now = time.perf_counter()
            for conn in list(self.busy):
                if conn.pending is not None and now - conn.pending[2] > self.timeout_s:
                    self._fail(conn, TimeoutError(f"no response within {self.timeout_s:g} s"))

    def drain(self, timeout_s: float) -> None:
        """Wait until every request has been answered (or timed out), at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.busy and time.monotonic() < deadline:
            gevent.sleep(0.01)
        self.watchdog.kill(block=False)

    def abandon(self) -> int:
        """Record every request still in flight as interrupted and close its connection (a late
        answer then finds no one waiting); returns how many there were."""
        self.stopped = True
        count = 0
        for conn in list(self.busy):
            if conn.pending is not None:
                intended_s, sent_s, _ = conn.pending
                conn.pending = None
                self.recorder.record_interrupted(intended_s, sent_s, self.name)
                count += 1
            self._close(conn)
        return count


class PooledSender:
    """One greenlet per request through geventhttpclient (https and other cases RawSender skips)."""

    def __init__(self, url: str, spec: dict[str, Any], max_in_flight: int, timeout_s: float,
                 recorder: RequestRecorder) -> None:
        # The pool is as large as the in-flight cap, so that the cap, not the pool, is what binds.
        self.client = HTTPClient.from_url(URL(url), concurrency=max_in_flight, connection_timeout=timeout_s,
                                          network_timeout=timeout_s, insecure=True)  # like Locust's default
        self.spec = spec
        self.body = (spec.get("body") or "").encode("utf-8")
        self.headers = dict(spec.get("headers") or {})
        self.pool = Pool(max_in_flight)
        self.recorder = recorder
        self.pending: dict[Any, tuple[float, float]] = {}  # greenlet -> (intended_s, sent_s)
        self.stopped = False  # set by abandon(): nothing is sent after the last rows went

    def prewarm(self) -> None:
        """Nothing to do: the pool connects on demand."""

    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self.pool)

    def full(self) -> bool:
        """Whether the next send has to wait for a response first."""
        return bool(self.pool.full())

    def send(self, intended_s: float) -> None:
        """Start one request in its own greenlet (waiting for a slot if the cap is reached)."""
        self.pool.spawn(self._send, intended_s)

    def _send(self, intended_s: float) -> None:
        if self.stopped:
            return
        sent_s = time.time()
        me = gevent.getcurrent()
        self.pending[me] = (intended_s, sent_s)
        started = time.perf_counter()
        try:
            response = self.client.request(self.spec["method"], self.spec["path"], body=self.body,
                                           headers=self.headers)
            try:
                n_bytes = len(response.read())
            finally:
                response.release()
            status = int(response.status_code)
            error = None if status < 400 else f"HTTP {status}"
            server = server_times(response.get)  # geventhttpclient: case-insensitive header lookup
        except Exception as exc:  # connection refused, reset, timeout: a failed request, not a crash
            status, n_bytes, error, server = 0, 0, _error_text(exc), NO_SERVER_TIMES
        latency_ms = (time.perf_counter() - started) * 1000.0
        if self.pending.pop(me, None) is None:
            return  # abandoned meanwhile: already recorded as interrupted
        self.recorder.record(intended_s, sent_s, latency_ms, status, n_bytes, error, self.spec["name"], server)

    def drain(self, timeout_s: float) -> None:
        """Wait for the requests in flight, at most `timeout_s`."""
        self.pool.join(timeout=timeout_s)

    def abandon(self) -> int:
        """Record every request still in flight as interrupted and stop its greenlet."""
        self.stopped = True
        pending, self.pending = self.pending, {}
        for intended_s, sent_s in pending.values():
            self.recorder.record_interrupted(intended_s, sent_s, self.spec["name"])
        self.pool.kill(block=False)
        return len(pending)


def make_sender(url: str, spec: dict[str, Any], max_in_flight: int, timeout_s: float,
                recorder: RequestRecorder, config: dict[str, Any] | None = None) -> Any:
    """RawSender for http targets, PooledSender for https (or when $CAPSIM_OPEN_LOOP_SENDER=pooled);
    StreamSender (locust_stream_sender.py) for streamed LLM requests, with the worker's share of the
    token counts from `config`."""
    if spec.get("openai"):
        from capsim.loadtest.locust_stream_sender import StreamSender

        config = config or {}
        return StreamSender(url, spec, max_in_flight, timeout_s, recorder, list(config.get("tokens") or []),
                            int(config.get("index", 0)), int(config.get("n_workers", 1)), int(config.get("step", 0)))
    if url.lower().startswith("https://") or os.environ.get("CAPSIM_OPEN_LOOP_SENDER") == "pooled":
        return PooledSender(url, spec, max_in_flight, timeout_s, recorder)
    return RawSender(url, spec, max_in_flight, timeout_s, recorder)
