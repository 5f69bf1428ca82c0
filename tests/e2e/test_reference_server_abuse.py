"""The real server process against half-sent requests and huge headers: connections that never
finish their request are closed at the read deadline while normal requests are served, and huge
request ids are refused without growing the process."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
import requests

from reference_server.launch import ServerProcess

pytestmark = [pytest.mark.e2e]

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}


def rss_bytes(url: str) -> float:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("no RSS metric")


def test_half_sent_requests_are_closed_and_huge_ids_refused(tmp_path: Path) -> None:
    args = ["--model", "mlp", "--device", "cpu", "--torch-threads", "1", "--no-nvml", "--read-timeout-s", "1"]
    with ServerProcess(args, log_dir=tmp_path) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        half_open = []
        for i in range(20):  # half a head, or a whole head and one byte of a 1000-byte body
            sock = socket.create_connection((host, int(port)))
            partial = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
            sock.sendall(partial + (b"Content-Length: 1000\r\n\r\n{" if i % 2 else b"X-Slow: a"))
            sock.settimeout(10)
            half_open.append(sock)
        t0 = time.monotonic()
        # Meanwhile normal requests are served.
        for _ in range(5):
            assert requests.post(server.url + "/v2/models/mlp/infer", json=BODY, timeout=5).status_code == 200
        for sock in half_open:
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert sock.recv(4096) == b""  # then closed
            sock.close()
        assert time.monotonic() - t0 < 8  # the deadline is 1 s; "closed at all", not a timing

        rss_before = rss_bytes(server.url)
        session = requests.Session()
        for _ in range(50):
            with contextlib.suppress(requests.ConnectionError):  # refused unread: may be a reset
                r = session.post(server.url + "/v2/models/mlp/infer", json=BODY,
                                 headers={"X-Request-Id": "r" * 1_000_000}, timeout=10)  # fmt: skip
                assert r.status_code == 431 and "request headers exceed" in r.json()["error"]
        assert rss_bytes(server.url) - rss_before < 32 * 2**20
        r = requests.post(
            server.url + "/v2/models/mlp/infer", json=BODY, headers={"X-Request-Id": "r" * 200}, timeout=5
        )
        assert r.status_code == 400 and "X-Request-Id" in r.json()["error"]
