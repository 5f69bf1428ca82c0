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
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from reference_server.batcher import RequestResult
from reference_server.models import ModelSpec

MODEL_VERSION = "1"
INPUT_NAME = "input"
OUTPUT_NAME = "output"

# A request id (the v2 "id" or an X-Request-Id header) is kept with the request and logged with its
# batch, so its length is bounded: 128 characters hold any UUID, W3C trace id or ULID with room to
# spare. A longer one is refused (400) rather than cut, because a cut id no longer joins the
# client's records to the server's.
MAX_REQUEST_ID_CHARS = 128
# The largest JSON body a valid request can need, per input value: "-1.2345678e-38" with a
# separator and the indentation of a pretty-printed nested list (a value takes 10-16 bytes compact).
JSON_BYTES_PER_VALUE = 64
# Room for everything that is not tensor data: the envelope, id, parameters, binary-extension header.
ENVELOPE_BYTES = 64 * 1024


class ProtocolError(Exception):
    """A request the server cannot accept: `status` is the HTTP code to answer with;
    `close_connection` when the rest of the request will not be read."""

    def __init__(self, status: int, message: str, close_connection: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close_connection = close_connection


def max_request_bytes(spec: ModelSpec, max_items: int) -> int:
    """The default body limit: the largest body a valid request for `spec` (at most `max_items`
    items, pretty-printed JSON) can need. Anything larger cannot be a valid request: 413."""
    return ENVELOPE_BYTES + max_items * math.prod(spec.input_shape) * JSON_BYTES_PER_VALUE


def checked_request_id(value: Any, where: str) -> str | None:
    """The request id as text, or None when absent; 400 when longer than `MAX_REQUEST_ID_CHARS`."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_REQUEST_ID_CHARS:
        raise ProtocolError(400, f"{where}: {len(text)} characters, at most {MAX_REQUEST_ID_CHARS} allowed")
    return text


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
    return _check_values(array.reshape(shape), spec, where)


def _check_values(array: np.ndarray, spec: ModelSpec, where: str) -> np.ndarray:
    """Finite floats; token ids inside the vocabulary."""
    if array.dtype == np.float32 and not np.isfinite(array).all():
        raise ProtocolError(400, f"{where}: contains NaN or infinity")
    if spec.input_upper_bound is not None and (
        array.min(initial=0) < 0 or array.max(initial=0) >= spec.input_upper_bound
    ):
        raise ProtocolError(400, f"{where}: token ids must be in [0, {spec.input_upper_bound})")
    return array


@dataclass
class V2Request:
    """A parsed v2 inference request."""

    items: np.ndarray  # [n, *input_shape]
    request_id: Any = None
    binary_output: bool = False  # answer with the binary tensor extension


def _wants_binary_output(payload: dict[str, Any]) -> bool:
    params = payload.get("parameters")
    if isinstance(params, dict) and params.get("binary_data_output") is True:
        return True
    outputs = payload.get("outputs")
    if not isinstance(outputs, list):
        return False
    params = [out.get("parameters") for out in outputs if isinstance(out, dict)]
    return any(isinstance(p, dict) and p.get("binary_data") is True for p in params)


def parse_v2_infer(body: bytes, spec: ModelSpec, max_items: int, json_length: int | None = None) -> V2Request:
    """A v2 inference request → its items, id and output encoding.

    `json_length` is the `Inference-Header-Content-Length` header of Triton's binary tensor
    extension: the body is that many bytes of JSON followed by the raw little-endian tensor bytes,
    announced by the input's `parameters.binary_data_size` (what `tritonclient` sends by default).
    """
    if json_length is not None:
        if not 0 < json_length <= len(body):
            raise ProtocolError(
                400, f"Inference-Header-Content-Length {json_length} does not fit a {len(body)}-byte body"
            )
        header, binary = body[:json_length], body[json_length:]
    else:
        header, binary = body, b""
    payload = _loads(header)
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
        or not _item_shape_ok(shape[1:], spec)
        or shape[0] < 1
    ):
        rest = "".join(f", {d}" for d in spec.input_shape[1:])
        sized = f" or [-1, 1..{spec.max_size}{rest}] ({spec.size_unit})" if spec.max_size is not None else ""
        raise ProtocolError(400, f"inputs[0].shape: expected {expected}{sized} with n >= 1, got {shape!r}")
    if shape[0] > max_items:
        raise ProtocolError(400, f"inputs[0].shape: {shape[0]} items exceed the max batch size {max_items}")
    params = tensor.get("parameters")
    binary_size = params.get("binary_data_size") if isinstance(params, dict) else None
    if binary_size is not None:
        array = _from_binary(binary, binary_size, spec, tuple(shape))
    elif "data" in tensor:
        array = _to_array(tensor["data"], spec, tuple(shape), "inputs[0].data")
    else:
        raise ProtocolError(400, "inputs[0].data is missing")
    return V2Request(array, payload.get("id"), _wants_binary_output(payload))


def _item_shape_ok(item_shape: list[int], spec: ModelSpec) -> bool:
    """One item's shape is the model's, or — a model with a size knob — shorter along its first
    axis (1..max_size: a request of that size; the executor pads its batch to the longest)."""
    expected = list(spec.input_shape)
    if item_shape == expected:
        return True
    return (spec.max_size is not None and len(item_shape) == len(expected) and item_shape[1:] == expected[1:]
            and 1 <= item_shape[0] <= spec.max_size)  # fmt: skip


def _from_binary(binary: bytes, size: Any, spec: ModelSpec, shape: tuple[int, ...]) -> np.ndarray:
    dtype = np.dtype(spec.numpy_input_dtype).newbyteorder("<")
    needed = math.prod(shape) * dtype.itemsize
    if not isinstance(size, int) or size != needed or len(binary) != needed:
        raise ProtocolError(
            400, f"inputs[0]: binary data of {len(binary)} bytes (binary_data_size {size!r}); shape "
            f"{list(shape)} of {spec.input_datatype} needs {needed}"
        )  # fmt: skip
    array = np.frombuffer(binary, dtype=dtype).astype(spec.numpy_input_dtype).reshape(shape)
    return _check_values(array, spec, "inputs[0]")


def parse_simple(body: bytes, spec: ModelSpec) -> np.ndarray:
    """A simple JSON request → items array [1, *input_shape]."""
    payload = _loads(body)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise ProtocolError(400, f'expected {{"inputs": <one item of shape {list(spec.input_shape)}>}}')
    return _to_array(payload["inputs"], spec, spec.input_shape, "inputs")[np.newaxis]


def encode_v2_response(
    spec: ModelSpec, result: RequestResult, request_id: Any, binary: bool = False
) -> tuple[bytes, int | None]:
    """The v2 inference response and, with the binary extension, the length of its JSON part
    (for the `Inference-Header-Content-Length` header); JSON outputs are flattened, as the
    protocol allows."""
    out = result.output
    body: dict[str, Any] = {"model_name": spec.name, "model_version": MODEL_VERSION}
    if request_id is not None:
        body["id"] = request_id
    tensor: dict[str, Any] = {"name": OUTPUT_NAME, "shape": list(out.shape), "datatype": spec.output_datatype}
    if not binary:
        tensor["data"] = out.ravel()
        body["outputs"] = [tensor]
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), None
    raw = np.ascontiguousarray(out, dtype=np.dtype("<f4")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    body["outputs"] = [tensor]
    header = orjson.dumps(body)
    return header + raw, len(header)


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
