"""What the load tester asks the target before a run: which model it serves (`--model` left out)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from capsim.errors import CapsimInputError
from capsim.loadtest.target import default_model, served_models

# path -> (method, JSON body) the fake target answers; everything else is 404
ROUTES: dict[str, tuple[str, object]] = {}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def _answer(self, method: str) -> None:
        if method == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = ROUTES.get(self.path)
        if route is None or route[0] != method:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(route[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


@pytest.fixture
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    ROUTES.clear()


def test_the_only_model_of_a_triton_repository_index(target: str) -> None:
    ROUTES["/v2/repository/index"] = ("POST", [{"name": "resnet", "version": "1", "state": "READY"}])
    assert default_model(target, "kserve") == "resnet"


def test_other_listings_are_understood(target: str) -> None:
    ROUTES["/v1/models"] = ("GET", {"models": ["fraud"]})  # KServe v1
    assert served_models(target) == ["fraud"]
    ROUTES["/v2/models"] = ("GET", {"models": [{"name": "a"}, {"name": "a"}]})  # asked before v1; duplicates once
    assert served_models(target) == ["a"]


def test_several_models_name_the_choices(target: str) -> None:
    ROUTES["/v2/repository/index"] = ("POST", [{"name": "a"}, {"name": "b"}])
    with pytest.raises(CapsimInputError, match=r"serves 2 models \(a, b\); choose one") as info:
        default_model(target, "json")
    assert info.value.field == "--model"


def test_no_listing_or_no_target_keeps_the_plain_error(target: str) -> None:
    for url in (target, "http://127.0.0.1:9"):
        with pytest.raises(CapsimInputError, match="--protocol json needs the model name"):
            default_model(url, "json")
    ROUTES["/v2/repository/index"] = ("POST", [])
    with pytest.raises(CapsimInputError, match="needs the model name"):
        default_model(target, "json")
