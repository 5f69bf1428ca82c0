"""The target: is it reachable, what is one request to it, and is it capsim's reference server?

Runs in the parent `capsim` process with `requests` (never gevent), before Locust starts, so that a
wrong URL or model name fails fast with a one-line message instead of a run full of errors.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from pydantic import ConfigDict, Field

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel

PROBE_TIMEOUT_S = 3.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_NUMPY_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
                 "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}


class RequestSpec(InputModel):
    """One request as every worker sends it: method, path (relative to the base URL), body, headers."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: str = "POST"
    path: str
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=lambda: {"Content-Type": "application/json"})
    name: str
    openai: dict[str, Any] | None = None  # --protocol openai: endpoint, model, force_length


def base_url(target: str) -> str:
    """`scheme://host:port` of the target URL."""
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc}"


def is_local(target: str) -> bool:
    """Whether the target runs on this machine (then NVML sampling makes sense)."""
    return (urlsplit(target).hostname or "") in LOCAL_HOSTS


def check_reachable(target: str) -> None:
    """Open (and close) a TCP connection to the target; a clear error when nothing listens there."""
    parts = urlsplit(target)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CapsimInputError(f"cannot connect to {parts.hostname}:{port} ({reason})", field="--target") from None


def _names(body: Any) -> list[str] | None:
    """Model names from a repository listing: a list of `{"name": ...}` (Triton / KServe v2
    repository index), or `{"models": [...]}` of names or such objects (KServe v1, others)."""
    items = body.get("models", body.get("data")) if isinstance(body, dict) else body
    if not isinstance(items, list):
        return None
    # OpenAI's `GET /v1/models` lists `{"data": [{"id": ...}]}`.
    names = [item.get("name", item.get("id")) if isinstance(item, dict) else item for item in items]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def served_models(target: str, protocol: str = "json") -> list[str] | None:
    """The models the target says it serves, or None when it answers no listing.

    Asked in turn: `POST /v2/repository/index` (the KServe v2 / Triton model-repository extension,
    which the reference server answers), `GET /v2/models`, `GET /v1/models` (KServe v1, and OpenAI's
    list, the only one asked for `--protocol openai`).
    """
    base = base_url(target)
    probes = (("POST", "/v2/repository/index"), ("GET", "/v2/models"), ("GET", "/v1/models"))
    for method, path in probes[2:] if protocol == "openai" else probes:
        try:
            response = requests.request(method, f"{base}{path}", json={} if method == "POST" else None,
                                        timeout=PROBE_TIMEOUT_S)
            names = _names(response.json()) if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            names = None
        if names is not None:
            return names
    return None


def default_model(target: str, protocol: str) -> str:
    """The model to load when `--model` is not given: the target's only model. Several models, or a
    target that lists none, is a one-line error naming `--model` (with the choices, when known)."""
    names = served_models(target, protocol)
    if names and len(names) == 1:
        return names[0]
    if names:
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        raise CapsimInputError(f"the target serves {len(names)} models ({shown}); choose one", field="--model")
    raise CapsimInputError(f"--protocol {protocol} needs the model name", field="--model")


def _model_metadata(target: str, model: str) -> dict[str, Any]:
    url = f"{base_url(target)}/v2/models/{model}"
    try:
        response = requests.get(url, timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        raise CapsimInputError(f"cannot read model metadata from {url} ({type(exc).__name__})",
                               field="--model") from None
    if response.status_code == 404:
        raise CapsimInputError(f"the target has no model {model!r} ({url} answered 404)", field="--model")
    if response.status_code != 200:
        raise CapsimInputError(
            f"{url} answered {response.status_code}; give the request body with --payload FILE", field="--payload"
        )
    try:
        meta = response.json()
        meta["inputs"][0]["shape"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise CapsimInputError(f"{url} gave no KServe v2 input metadata; give the body with --payload FILE",
                               field="--payload") from None
    return meta


def example_input(datatype: str, item_shape: list[int]) -> np.ndarray:
    """A deterministic example tensor of one item (fixed seed: every run sends the same bytes)."""
    dtype = _NUMPY_DTYPES.get(datatype.upper())
    if dtype is None:
        raise CapsimInputError(f"unsupported input datatype {datatype!r}; give the body with --payload FILE",
                               field="--payload")
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 100, size=item_shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=item_shape).astype(bool)
    return rng.standard_normal(item_shape).astype(dtype)


def build_request(target: str, protocol: str, model: str | None, payload_path: str | None) -> RequestSpec:
    """The request every worker sends, for `--protocol json|kserve|generic` (`--protocol openai`:
    `openai_request_spec`)."""
    body = Path(payload_path).read_text(encoding="utf-8") if payload_path else None
    if protocol == "generic":
        path = urlsplit(target).path or "/"
        query = urlsplit(target).query
        return RequestSpec(path=path + (f"?{query}" if query else ""), body=body, name=path)
    assert model is not None
    path = f"/predict/{model}" if protocol == "json" else f"/v2/models/{model}/infer"
    if body is None:
        meta = _model_metadata(target, model)
        spec = meta["inputs"][0]
        item_shape = [int(d) for d in spec["shape"][1:]]
        item = example_input(spec.get("datatype", "FP32"), item_shape)
        if protocol == "json":
            body = json.dumps({"inputs": item.tolist()})
        else:
            body = json.dumps(
                {"inputs": [{"name": spec.get("name", "input"), "shape": [1, *item_shape],
                             "datatype": spec.get("datatype", "FP32"), "data": item.ravel().tolist()}]}
            )
    return RequestSpec(path=path, body=body, name=path)


def server_config(target: str) -> dict[str, Any] | None:
    """The reference server's own settings (`GET /debug/config`: batching, instances, queue limits,
    timeouts, device, hardware), recorded in the manifest so that a run can be replayed in the
    simulator with the server's exact settings; None when the target does not serve it."""
    try:
        response = requests.get(f"{base_url(target)}/debug/config", timeout=PROBE_TIMEOUT_S)
        body = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("config"), dict) else None


def openai_request_spec(endpoint: str, model: str, force_length: bool) -> RequestSpec:
    """`--protocol openai`: the route and what each worker needs to build every request's own body
    at its send (`openai_request.request_body`: the prompt and output length differ per request)."""
    from capsim.loadtest.openai_request import ENDPOINT_PATHS

    path = ENDPOINT_PATHS[endpoint]
    return RequestSpec(path=path, name=path,
                       openai={"endpoint": endpoint, "model": model, "force_length": force_length})
