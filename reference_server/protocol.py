"""Request parsing and response encoding for the two HTTP APIs.

KServe v2 / Triton (`POST /v2/models/{name}/infer`)::

    {"id": "optional", "inputs": [{"name": "input", "shape": [n, ...item shape],
                                   "datatype": "FP32", "data": [...flat or nested...]}]}
    -> {"model_name": "cnn", "model_version": "1", "id": "...",
        "outputs": [{"name": "output", "shape": [n, 10], "datatype": "FP32", "data": [...flat...]}]}

Simple JSON (`POST /predict/{name}`): `{"inputs": <one item, nested>}` ->
`{"model", "outputs": <one item's output, nested>, "batch_size", "queue_ms", "compute_ms"}`.

Every problem with a request raises `ProtocolError` with the HTTP status to answer and a message
that says what was expected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from reference_server.batcher import RequestResult
from reference_server.models import ModelSpec

MODEL_VERSION = "1"
INPUT_NAME = "input"
OUTPUT_NAME = "output"


class ProtocolError(Exception):
    """A request the server cannot accept: `status` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> bytes:
    """The JSON error body used by every error response."""
    return orjson.dumps({"error": message})


def _loads(body: bytes) -> Any:
    if not body:
        raise ProtocolError(400, "empty request body: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"malformed JSON: {exc}") from None


def _to_array(data: Any, spec: ModelSpec, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Convert JSON numbers (flat or nested) to the model's dtype and `shape`, checking values."""
    dtype = spec.numpy_input_dtype
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        kind = "numbers" if dtype is np.float32 else "integers"
        raise ProtocolError(400, f"{where}: expected {kind} in a flat or evenly nested list") from None
    # np.asarray silently truncates 1.7 to 1 for integer dtypes; refuse non-integers instead.
    if dtype is np.int64 and not np.array_equal(array, np.asarray(data, dtype=np.float64)):
        raise ProtocolError(400, f"{where}: expected integers (token ids)")
    if array.size != math.prod(shape):
        raise ProtocolError(400, f"{where}: has {array.size} values, shape {list(shape)} needs {math.prod(shape)}")
    if array.ndim != 1 and array.shape != shape:
        raise ProtocolError(400, f"{where}: nested as {list(array.shape)}, expected {list(shape)}")
    array = array.reshape(shape)
    if dtype is np.float32 and not np.isfinite(array).all():
        raise ProtocolError(400, f"{where}: contains NaN or infinity")
    if spec.input_upper_bound is not None and (
        array.min(initial=0) < 0 or array.max(initial=0) >= spec.input_upper_bound
    ):
        raise ProtocolError(400, f"{where}: token ids must be in [0, {spec.input_upper_bound})")
    return array


def parse_v2_infer(body: bytes, spec: ModelSpec, max_items: int) -> tuple[np.ndarray, Any]:
    """A v2 inference request → (items array [n, *input_shape], the request id or None)."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        raise ProtocolError(400, "expected a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(400, f"'inputs' must be a list of exactly one tensor named '{INPUT_NAME}'")
    tensor = inputs[0]
    if tensor.get("name", INPUT_NAME) != INPUT_NAME:
        raise ProtocolError(400, f"unknown input '{tensor.get('name')}': the model's input is '{INPUT_NAME}'")
    if tensor.get("datatype") != spec.input_datatype:
        raise ProtocolError(
            400, f"inputs[0].datatype: expected '{spec.input_datatype}', got {tensor.get('datatype')!r}"
        )
    shape = tensor.get("shape")
    expected = [-1, *spec.input_shape]
    if (
        not isinstance(shape, list)
        or len(shape) != len(expected)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1:] != expected[1:]
        or shape[0] < 1
    ):
        raise ProtocolError(400, f"inputs[0].shape: expected {expected} with n >= 1, got {shape!r}")
    if shape[0] > max_items:
        raise ProtocolError(400, f"inputs[0].shape: {shape[0]} items exceed the max batch size {max_items}")
    if "data" not in tensor:
        raise ProtocolError(400, "inputs[0].data is missing")
    array = _to_array(tensor["data"], spec, tuple(shape), "inputs[0].data")
    return array, payload.get("id")


def parse_simple(body: bytes, spec: ModelSpec) -> np.ndarray:
    """A simple JSON request → items array [1, *input_shape]."""
    payload = _loads(body)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ProtocolError(400, f'expected {{"inputs": <one item of shape {list(spec.input_shape)}>}}')
    return _to_array(payload["inputs"], spec, spec.input_shape, "inputs")[np.newaxis]


def encode_v2_response(spec: ModelSpec, result: RequestResult, request_id: Any) -> bytes:
    """The v2 inference response (outputs flattened, as the protocol's JSON form allows)."""
    out = result.output
    body: dict[str, Any] = {"model_name": spec.name, "model_version": MODEL_VERSION}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = [
        {"name": OUTPUT_NAME, "shape": list(out.shape), "datatype": spec.output_datatype, "data": out.ravel()}
    ]
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_simple_response(spec: ModelSpec, result: RequestResult) -> bytes:
    """The simple JSON response for one item."""
    return orjson.dumps(
        {
            "model": spec.name,
            "outputs": result.output[0],
            "batch_size": result.batch_size,
            "queue_ms": round(result.queue_s * 1e3, 4),
            "compute_ms": round(result.compute_s * 1e3, 4),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def timing_headers(result: RequestResult) -> dict[str, str]:
    """`X-Batch-Size`, `X-Queue-Ms`, `X-Compute-Ms` on every inference response."""
    return {
        "X-Batch-Size": str(result.batch_size),
        "X-Queue-Ms": f"{result.queue_s * 1e3:.4f}",
        "X-Compute-Ms": f"{result.compute_s * 1e3:.4f}",
    }


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """v2 model metadata: `GET /v2/models/{name}`."""
    return {
        "name": spec.name,
        "versions": [MODEL_VERSION],
        "platform": "pytorch_libtorch",
        "inputs": [{"name": INPUT_NAME, "datatype": spec.input_datatype, "shape": [-1, *spec.input_shape]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": spec.output_datatype, "shape": [-1, *spec.output_shape]}],
    }
