"""The server under abuse, in process: the ASGI app driven directly (no sockets, no model: a fake
executor answers each batch at once), so every case costs milliseconds.

Long request ids, oversized bodies, the /debug routes' exposure, and query parameters no route may
answer with a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_server.app import create_app
from reference_server.batcher import Batch, BatcherConfig, DynamicBatcher
from reference_server.config import ServerConfig
from reference_server.fastpath import DRAIN_BYTES, InferenceApp
from reference_server.metrics import MetricsObserver
from reference_server.models import MODELS
from reference_server.protocol import MAX_REQUEST_ID_CHARS, max_request_bytes

INFER = "/v2/models/mlp/infer"


class EchoExecutor:
    """Answers every batch on the next loop iteration with each item's first value."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batcher: DynamicBatcher | None = None

    def submit(self, batch: Batch) -> None:
        assert self.batcher is not None
        outputs = [r.items[:, :1] for r in batch.requests]
        self.loop.call_soon(self.batcher.on_batch_done, batch, outputs, self.loop.time(), time.time())


def serving_app(**overrides: Any) -> InferenceApp:
    """The app for `overrides`, marked ready with an echoing executor (call on the running loop)."""
    app = create_app(ServerConfig(**{"model": "mlp", "nvml": False, **overrides}))
    loop = asyncio.get_running_loop()
    executor = EchoExecutor(loop)
    observer = MetricsObserver(app.state.metrics, app.state.batch_log)  # as the server wires it
    batcher = DynamicBatcher(BatcherConfig(max_batch_size=app.state.config.max_batch_size), loop, observer)
    batcher.attach([executor])
    executor.batcher = batcher
    app.state.batcher = batcher
    app.state.ready = True
    return app


async def call(
    app: InferenceApp,
    method: str,
    path: str,
    query: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    reads: list[int] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the ASGI app: (status, response headers, body); each read of the body
    appends to `reads`."""
    headers = list(headers)
    if body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": headers, "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if reads is not None:
            reads.append(1)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


def v2_body(request_id: str | None = None, n_items: int = 1) -> bytes:
    payload: dict[str, Any] = {"inputs": [{"name": "input", "shape": [n_items, 64], "datatype": "FP32",
                                           "data": [0.5] * (64 * n_items)}]}  # fmt: skip
    if request_id is not None:
        payload["id"] = request_id
    return orjson.dumps(payload)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def error_of(body: bytes) -> str:
    """The one-line JSON error every refusal carries."""
    parsed = orjson.loads(body)
    assert set(parsed) == {"error"} and "\n" not in parsed["error"], parsed
    return str(parsed["error"])


# -- request ids -----------------------------------------------------------------------------------
def test_request_id_at_the_cap_is_served_and_logged_and_one_over_is_refused() -> None:
    async def main() -> None:
        app = serving_app()
        ok_id = "r" * MAX_REQUEST_ID_CHARS
        status, _, _ = await call(app, "POST", INFER, headers=[(b"x-request-id", ok_id.encode())], body=v2_body())
        assert status == 200
        assert orjson.loads(app.state.batch_log.since(0)[-1])["request_ids"] == [ok_id]

        long_id = b"r" * (MAX_REQUEST_ID_CHARS + 1)
        status, _, body = await call(app, "POST", INFER, headers=[(b"x-request-id", long_id)], body=v2_body())
        assert status == 400 and "X-Request-Id" in error_of(body) and str(MAX_REQUEST_ID_CHARS) in error_of(body)
        status, _, body = await call(app, "POST", INFER, body=v2_body(request_id="i" * 1000))
        assert status == 400 and error_of(body).startswith("id: 1000 characters")
        # Nothing refused reached the batch log.
        assert app.state.batcher.counters.submitted == 1 and app.state.batch_log.last_id == 1

    run(main())


# -- bodies ------------------------------------------------------------------------------------------
def test_default_body_limit_is_what_the_largest_valid_request_needs() -> None:
    async def main() -> None:
        app = serving_app(max_batch_size=4)
        limit = max_request_bytes(MODELS["mlp"], 4)
        assert app.state.max_body_bytes == limit
        # The largest valid request, pretty-printed, fits.
        pretty = orjson.dumps(orjson.loads(v2_body(n_items=4)), option=orjson.OPT_INDENT_2)
        assert (await call(app, "POST", INFER, body=pretty))[0] == 200

        status, headers, body = await call(app, "POST", INFER, body=b" " * (limit + 1))
        assert status == 413 and "exceeds the limit" in error_of(body)
        assert headers.get(b"connection") != b"close"  # read and dropped: the connection stays usable

    run(main())


def test_body_declared_far_over_the_limit_is_refused_unread_and_the_connection_closed() -> None:
    async def main() -> None:
        app = serving_app(max_body_bytes=1000)
        declared = 1000 + DRAIN_BYTES + 1
        reads: list[int] = []
        length = [(b"content-length", str(declared).encode())]
        status, headers, body = await call(app, "POST", INFER, headers=length, body=b"{", reads=reads)
        assert status == 413 and headers[b"connection"] == b"close" and str(declared) in error_of(body)
        assert reads == []  # not one byte of the body was read

    run(main())


# -- /debug routes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "flag", "read_only_on", "stall_on"),
    [
        ("127.0.0.1", False, True, False),  # the load tester reads the batch log on loopback
        ("::1", False, True, False),
        ("localhost", False, True, False),
        ("0.0.0.0", False, False, False),  # beyond loopback: nothing without the flag
        ("10.1.2.3", False, False, False),
        ("0.0.0.0", True, True, True),
        ("127.0.0.1", True, True, True),
    ],
)
def test_debug_routes_need_the_flag_beyond_loopback_and_stall_always(
    host: str, flag: bool, read_only_on: bool, stall_on: bool
) -> None:
    async def main() -> None:
        app = serving_app(host=host, debug_endpoints=flag)
        for path in ("/debug/batches", "/debug/telemetry", "/debug/config"):
            status, _, body = await call(app, "GET", path)
            assert status == (200 if read_only_on else 404), (path, body)
        status, _, _ = await call(app, "POST", "/debug/stall", query=b"seconds=0")
        # On: the model is not loaded in this test, so the hook answers 503 (it exists).
        assert status == (503 if stall_on else 404)

    run(main())


def test_debug_config_reports_the_bounds_in_force() -> None:
    async def main() -> None:
        app = serving_app(max_batch_size=4, max_wait_ms=2.0)
        app.state.apply_queue_bounds(max_batch_s=0.020)
        config = orjson.loads((await call(app, "GET", "/debug/config"))[2])["config"]
        # 10 full batches of 20 ms + the 2 ms window; 11 batches of 4 start within it.
        assert config["timeout_ms"] == pytest.approx(202.0) and config["timeout_auto"] is True
        assert config["queue_capacity"] == 44 and config["queue_capacity_auto"] is True
        assert app.state.batcher.config.timeout_s == pytest.approx(0.202)

    run(main())


# -- query parameters: 4xx with a JSON error, never a 500 -------------------------------------------
BAD_VALUES = [b"-1", b"abc", b"NaN", b"nan", b"inf", b"-inf", b"1e3", b"1.5", b"", b"--5", b"+5", b"0x10",
              b"9" * 30, b"-" + b"9" * 30, b"%00", b"%FF", b"\xd9\xa3", b"1%202", b"true", b"[]"]  # fmt: skip
ROUTES = [("GET", "/debug/batches", "since"), ("GET", "/debug/batches", "limit"), ("GET", "/debug/telemetry", "since"),
          ("POST", "/debug/stall", "seconds"), ("GET", "/metrics", "name[]"), ("GET", "/v2/health/ready", "x"),
          ("GET", "/v2/models/mlp", "version"), ("POST", INFER, "timeout")]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "name"), ROUTES)
def test_bad_query_parameters_never_give_a_500(method: str, path: str, name: str) -> None:
    async def main() -> None:
        app = serving_app(debug_endpoints=True)
        for value in BAD_VALUES:
            for query in (name.encode() + b"=" + value, name.encode() + b"=1&" + name.encode() + b"=" + value):
                body = v2_body() if path == INFER else b""
                status, _, content = await call(app, method, path, query=query, body=body)
                assert status < 500 or (status == 503 and path == "/debug/stall"), (path, query, status, content)
                if status >= 400 and status != 503:
                    error_of(content)

    run(main())


def test_paging_parameters_out_of_range_are_clamped_or_refused() -> None:
    async def main() -> None:
        app = serving_app()
        for _ in range(3):
            assert (await call(app, "POST", INFER, body=v2_body()))[0] == 200

        async def batches(query: bytes) -> tuple[int, Any]:
            status, _, body = await call(app, "GET", "/debug/batches", query=query)
            return status, orjson.loads(body)

        assert [b["batch_id"] for b in (await batches(b"since=-5"))[1]["batches"]] == [1, 2, 3]
        assert (await batches(b"since=999999999999999999"))[1]["batches"] == []
        assert [b["batch_id"] for b in (await batches(b"since=1&limit=999999999999999999"))[1]["batches"]] == [2, 3]
        assert (await batches(b"limit=-3"))[1]["batches"] == []
        status, body = await batches(b"since=1&since=2")
        assert status == 400 and "given 2 times" in body["error"]
        status, body = await batches(b"limit=1e3")
        assert status == 400 and "expected an integer" in body["error"]

    run(main())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=40), st.sampled_from(ROUTES))
def test_fuzzed_query_strings_never_give_a_500(query: bytes, route: tuple[str, str, str]) -> None:
    method, path, _ = route

    async def main() -> int:
        app = serving_app(debug_endpoints=True)
        body = v2_body() if path == INFER else b""
        return (await call(app, method, path, query=query, body=body))[0]

    status = run(main())
    assert status < 500 or (status == 503 and path == "/debug/stall"), (path, query, status)


# -- binding beyond loopback ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_binding_beyond_loopback_warns_once_on_stderr(
    host: str, loopback: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from reference_server.__main__ import warn_if_exposed

    config = ServerConfig(host=host)
    assert config.loopback_only is loopback
    warn_if_exposed(config)
    captured = capsys.readouterr()
    assert captured.out == ""
    if loopback:
        assert captured.err == ""
    else:
        assert len(captured.err.splitlines()) == 1 and "beyond loopback" in captured.err and host in captured.err
