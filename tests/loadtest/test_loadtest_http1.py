"""The minimal HTTP/1.1 framing of the open-loop sender."""

from __future__ import annotations

import pytest

from capsim.loadtest.http1 import ProtocolError, ResponseParser, build_request


def test_request_bytes() -> None:
    raw = build_request("POST", "/predict/mlp", "127.0.0.1:8000", {"Content-Type": "application/json",
                                                                  "content-length": "99"}, b'{"a":1}')
    head, body = raw.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /predict/mlp HTTP/1.1" and "Host: 127.0.0.1:8000" in lines
    assert "Content-Length: 7" in lines and "content-length: 99" not in lines
    assert body == b'{"a":1}'


def test_responses_split_anywhere_and_pipelined() -> None:
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    two = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n"
    three = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    stream = one + two + three
    for cut in range(1, len(stream)):
        parser = ResponseParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [(r.status, r.body_bytes) for r in got] == [(200, 5), (429, 0), (200, 5)], cut


def test_connection_close_and_http10() -> None:
    parser = ResponseParser()
    [r] = parser.feed(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert r.close and r.status == 503
    [r] = ResponseParser().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert r.close
    [r] = ResponseParser().feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert not r.close


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")


def test_server_timing_headers_are_kept_when_asked_for() -> None:
    parser = ResponseParser(keep_headers=("x-queue-ms", "x-batch-size"))
    [r] = parser.feed(b"HTTP/1.1 200 OK\r\nX-Queue-Ms: 1.25\r\nX-Batch-Size: 4\r\nX-Other: 1\r\n"
                      b"Content-Length: 0\r\n\r\n")
    assert r.headers == {"x-queue-ms": "1.25", "x-batch-size": "4"}
    assert ResponseParser().feed(b"HTTP/1.1 200 OK\r\nX-Queue-Ms: 1\r\nContent-Length: 0\r\n\r\n")[0].headers == {}
