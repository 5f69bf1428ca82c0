"""The HTTP limits on real loopback sockets: uvicorn with the guarded protocol in this process, a
trivial ASGI app behind it, deadlines of a fraction of a second. Times are asserted only as
generous upper bounds on "closed at all" (the rule's deadline is 0.3 s; the bound is seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn

from reference_server.http_guard import HttpLimits, guarded_protocol

LIMITS = HttpLimits(max_header_bytes=2048, read_timeout_s=0.3, idle_timeout_s=1.0)
CLOSED_WITHIN_S = 5.0  # far above every deadline here: only "the server closed it" is asserted


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers its length."""
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def guarded_server() -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(echo_length, http=guarded_protocol(LIMITS), lifespan="off", log_level="error",
                            loop="asyncio", timeout_keep_alive=1)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    data = await asyncio.wait_for(reader.read(), timeout=CLOSED_WITHIN_S)
    return data, loop.time() - t0


def status_and_error(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), str(orjson.loads(body)["error"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_head_sent_byte_by_byte_is_closed_at_its_deadline_with_408() -> None:
    async def main() -> None:
        async with guarded_server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def drip() -> None:  # slowloris: a byte every 50 ms, never the blank line
                for byte in b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            dripping = asyncio.create_task(drip())
            data, _ = await read_until_closed(reader)
            dripping.cancel()
            status, error = status_and_error(data)
            assert status == 408 and "read timeout" in error

    run(main())


def test_a_body_never_completed_is_closed_with_408_and_normal_requests_still_work() -> None:
    async def main() -> None:
        async with guarded_server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            await writer.drain()
            # Meanwhile, a normal client on its own connection is served, twice on one connection,
            # with a pause longer than the read deadline between its requests (no deadline applies).
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(2):
                w2.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                head = await asyncio.wait_for(r2.readuntil(b"\r\n\r\n"), timeout=CLOSED_WITHIN_S)
                assert head.startswith(b"HTTP/1.1 200") and await r2.readexactly(1) == b"5"
                await asyncio.sleep(LIMITS.read_timeout_s * 1.5)
            w2.close()
            data, _ = await read_until_closed(reader)
            assert status_and_error(data)[0] == 408

    run(main())


def test_oversized_headers_get_431_whether_sent_whole_or_never_finished() -> None:
    async def main() -> None:
        async with guarded_server() as port:
            whole = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + b"r" * 4000 + b"\r\n\r\n"
            unfinished = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + b"r" * 8000  # no end, ever
            for request in (whole, unfinished):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                data, _ = await read_until_closed(reader)
                status, error = status_and_error(data)
                assert status == 431 and "2048 bytes" in error
                writer.close()
            # A megabyte of header: refused after the first read, the rest unread (so the client may
            # see a reset instead of the 431, as from any server that closes on unread data).
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nX-Request-Id: " + b"r" * 1_000_000)
            with contextlib.suppress(ConnectionResetError):
                data, _ = await read_until_closed(reader)
                assert status_and_error(data)[0] == 431
            writer.close()

    run(main())


def test_a_connection_that_never_sends_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        async with guarded_server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data, _ = await read_until_closed(reader)
            assert data == b""  # closed quietly, like an idle keep-alive connection
            writer.close()

    run(main())
